#!/usr/bin/env python3
"""Captures the protobuf request bodies kubectl sends, as test fixtures for src/api/protobuf.

Starts a plain-HTTP fake API server on 127.0.0.1 that answers discovery and records every
POST body, then runs kubectl (1.32+) against it. Writes src/api/protobuf/testdata/<name>.pb, and <name>.json from `--dry-run=client -o json`
(Go's JSON of the same object, which the decoder must reproduce)
(only for protobuf bodies: `kubectl run` is not captured, as it sends its pod as JSON).

    python3 tools/capture_kubectl_protobuf.py [--kubectl kubectl] [--out src/api/protobuf/testdata]
"""

import argparse
import json
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CORE_RESOURCES = [
    ("pods", "Pod", True),
    ("configmaps", "ConfigMap", True),
    ("secrets", "Secret", True),
    ("namespaces", "Namespace", False),
    ("services", "Service", True),
    ("serviceaccounts", "ServiceAccount", True),
]
GROUPS = {
    "apps": [("deployments", "Deployment", True)],
    "batch": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "scheduling.k8s.io": [("priorityclasses", "PriorityClass", False)],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resource_list(group_version, resources):
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": VERBS,
            }
            for plural, kind, namespaced in resources
        ],
    }


class Handler(BaseHTTPRequestHandler):
    bodies = []

    def log_message(self, *_args):
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return self.send_json(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                            "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                        }
                        for g in GROUPS
                    ],
                },
            )
        if path == "/api/v1":
            return self.send_json(200, resource_list("v1", CORE_RESOURCES))
        for g, res in GROUPS.items():
            if path == f"/apis/{g}/v1":
                return self.send_json(200, resource_list(f"{g}/v1", res))
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        Handler.bodies.append((self.path, self.headers.get("Content-Type"), body))
        # Reply with a plausible object; kubectl only prints its kind and name.
        parts = self.path.split("?")[0].strip("/").split("/")
        self.send_json(
            201,
            {
                "apiVersion": "v1" if parts[0] == "api" else f"{parts[1]}/{parts[2]}",
                "kind": "Unknown",
                "metadata": {"name": "x", "namespace": "default"},
            },
        )


def insert_flags(cmd, flags):
    """Adds flags to a kubectl command line, before any `--`."""
    if "--" in cmd:
        i = cmd.index("--")
        return cmd[:i] + flags + cmd[i:]
    return cmd + flags


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--out", default="src/api/protobuf/testdata")
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "config")
        with open(kubeconfig, "w") as f:
            f.write(
                f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:{port}
contexts:
- name: fake
  context: {{cluster: fake, user: fake, namespace: default}}
current-context: fake
users:
- name: fake
  user: {{token: fake}}
"""
            )
        env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=tmp)
        commands = {
            "configmap": ["create", "configmap", "cfg", "--from-literal=a=b", "--from-literal=c=d"],
            "secret": ["create", "secret", "generic", "s", "--from-literal=password=hunter2"],
            "deployment": ["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=80"],
            "namespace": ["create", "namespace", "team-a"],
            "service": ["create", "service", "clusterip", "web", "--tcp=80:8080"],
            "job": ["create", "job", "j", "--image=busybox", "--", "echo", "hi"],
            "cronjob": ["create", "cronjob", "c", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
            "serviceaccount": ["create", "serviceaccount", "robot"],
            "priorityclass": ["create", "priorityclass", "low", "--value=-5", "--description=low prio"],
            "token": ["create", "token", "robot", "--duration=1h", "--audience=api"],
        }
        os.makedirs(args.out, exist_ok=True)
        for name, cmd in commands.items():
            Handler.bodies.clear()
            proc = subprocess.run([args.kubectl, *cmd], env=env, capture_output=True, text=True)
            posts = list(Handler.bodies)
            print(f"{name}: rc={proc.returncode} {proc.stderr.strip()[:200]}")
            for path, ctype, body in posts:
                print(f"  POST {path} {ctype} {len(body)} bytes")
            posts = [p for p in posts if p[1] == "application/vnd.kubernetes.protobuf"]
            if posts:
                with open(os.path.join(args.out, f"{name}.pb"), "wb") as f:
                    f.write(posts[-1][2])
            # The same object as Go's encoding/json writes it: the decoder's expected output.
            dry = subprocess.run(
                [args.kubectl, *insert_flags(cmd, ["--dry-run=client", "-o", "json"])],
                env=env,
                capture_output=True,
                text=True,
            )
            if dry.returncode == 0:
                with open(os.path.join(args.out, f"{name}.json"), "w") as f:
                    f.write(dry.stdout)
            else:
                print(f"  no --dry-run=client JSON: {dry.stderr.strip()[:200]}")
    server.shutdown()


if __name__ == "__main__":
    main()
