"""Refuses privileged containers and hostPath volumes.

Pods and the pod templates of workloads (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
CronJob, PodTemplate) are checked; every container list counts (initContainers, containers,
ephemeralContainers). The denial names each offending container and volume.

Settings (all optional):

    settings:
      allowedHostPaths: [/var/log]   # hostPath volumes under these paths are allowed

Built with componentize-py into a component of the `wkube:admission` `policy` world; see
plugins/build.sh.
"""

import json

from componentize_py_types import Err
from wit_world import WitWorld
from wit_world.imports.types import Operation, Request, Response

# Where the pod spec sits, by kind; kinds not listed here are let through.
POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def parse_settings(text: str) -> list[str]:
    """The allowed hostPath prefixes, or ValueError saying what is wrong with the settings."""
    try:
        settings = json.loads(text or "{}")
    except ValueError as e:
        raise ValueError(f"settings are not JSON: {e}")
    if not isinstance(settings, dict):
        raise ValueError("settings must be an object")
    unknown = sorted(set(settings) - {"allowedHostPaths"})
    if unknown:
        # A typo would otherwise silently leave the policy stricter than meant.
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    prefixes = settings.get("allowedHostPaths", [])
    if not isinstance(prefixes, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in prefixes
    ):
        raise ValueError("settings.allowedHostPaths must be a list of absolute paths")
    return [p.rstrip("/") or "/" for p in prefixes]


def path_allowed(path: str, prefixes: list[str]) -> bool:
    # A prefix matches whole path segments: /var/log allows /var/log/x, not /var/logs.
    path = path.rstrip("/") or "/"
    return any(
        p == "/" or path == p or path.startswith(p + "/") for p in prefixes
    )


def pod_spec(obj: dict):
    node = obj
    for key in POD_SPEC_PATHS.get(obj.get("kind", ""), ()):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node is not obj else None


def violations(spec: dict, allowed_paths: list[str]) -> list[str]:
    found = []
    for list_name in CONTAINER_LISTS:
        for c in spec.get(list_name) or []:
            ctx = c.get("securityContext") or {}
            if ctx.get("privileged") is True:
                found.append(f"{list_name[:-1]} \"{c.get('name', '?')}\" is privileged")
    for v in spec.get("volumes") or []:
        host_path = v.get("hostPath")
        if host_path is None:
            continue
        path = host_path.get("path", "")
        if not path_allowed(path, allowed_paths):
            found.append(f"volume \"{v.get('name', '?')}\" mounts host path {path}")
    return found


def answer(allowed: bool, message: str | None = None) -> Response:
    return Response(allowed=allowed, message=message, code=None, warnings=[], patch=None)


class WitWorld(WitWorld):
    def validate(self, settings: str, request: Request) -> Response:
        # An object on its way out cannot escalate anything.
        if request.operation == Operation.DELETE or request.object is None:
            return answer(True)
        try:
            allowed_paths = parse_settings(settings)
        except ValueError as e:
            return answer(False, str(e))
        spec = pod_spec(json.loads(request.object))
        found = violations(spec, allowed_paths) if spec else []
        if not found:
            return answer(True)
        return answer(
            False,
            "; ".join(found)
            + " (privileged containers and hostPath volumes are not allowed)",
        )

    def mutate(self, settings: str, request: Request) -> Response:
        return answer(True)

    def validate_settings(self, settings: str) -> None:
        try:
            parse_settings(settings)
        except ValueError as e:
            raise Err(str(e))
