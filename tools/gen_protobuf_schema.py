#!/usr/bin/env python3
"""Generates src/api/protobuf/schema.rs: the protobuf -> JSON field table of the Kubernetes kinds
wkube decodes from `application/vnd.kubernetes.protobuf` request bodies.

Sources (upstream, one release; keep in step with the k8s-openapi feature, v1_33):
  * `generated.proto` of each package: message names, field numbers, proto types, labels;
  * the Go types (`*.go`) of the same package: for each field (matched by field number, from the
    `protobuf:"..."` struct tag) its JSON name (`json:"..."` tag), whether it is `omitempty`,
    and whether the Go field is a pointer. A non-pointer `omitempty` scalar is always written by
    the Go protobuf marshaller, even when zero; the JSON form omits it, so the decoder must too.

Usage (git directories of github.com/kubernetes/api and github.com/kubernetes/apimachinery;
a bare clone or a checkout's .git both work):

    git clone --bare https://github.com/kubernetes/api /tmp/k8s-api.git
    git clone --bare https://github.com/kubernetes/apimachinery /tmp/k8s-apimachinery.git
    python3 tools/gen_protobuf_schema.py --api /tmp/k8s-api.git \
        --apimachinery /tmp/k8s-apimachinery.git --ref v0.33.9 > src/api/protobuf/schema.rs
    cargo fmt
"""

import argparse
import re
import subprocess
import sys

API_PACKAGES = [
    "core/v1",
    "apps/v1",
    "batch/v1",
    "coordination/v1",
    "discovery/v1",
    "events/v1",
    "scheduling/v1",
    "policy/v1",
    "authentication/v1",
    "autoscaling/v1",
    "node/v1",
]
APIMACHINERY_PACKAGES = [
    "pkg/apis/meta/v1",
    "pkg/runtime",
    "pkg/runtime/schema",
    "pkg/api/resource",
    "pkg/util/intstr",
]

# Messages whose JSON form is not an object; the decoder handles them natively.
SPECIAL = {
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
}
SCALARS = {
    "string": "String",
    "bytes": "Bytes",
    "bool": "Bool",
    "int32": "Int32",
    "int64": "Int64",
    "double": "Double",
}


def git_show(gitdir, ref, path):
    return subprocess.run(
        ["git", "--git-dir", gitdir, "show", f"{ref}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def git_ls(gitdir, ref, path):
    out = subprocess.run(
        ["git", "--git-dir", gitdir, "ls-tree", "--name-only", f"{ref}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


FIELD_RE = re.compile(
    r"^\s*(optional|repeated|required)?\s*(map<\s*(\S+)\s*,\s*(\S+)\s*>|\S+)\s+(\w+)\s*=\s*(\d+)\s*(\[[^\]]*\])?\s*;"
)


def parse_proto(text):
    """Returns (package, {message: [(label, type, map_key, name, number)]})."""
    text = strip_comments(text)
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M).group(1)
    messages = {}
    current = None
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        m = re.match(r"^message\s+(\w+)\s*\{", stripped)
        if m:
            if depth != 0:
                sys.exit(f"nested message {m.group(1)} in {package} is not supported")
            current = m.group(1)
            messages[current] = []
            depth = 1
            if stripped.endswith("}"):
                depth = 0
            continue
        if stripped.startswith(("oneof", "enum ")):
            sys.exit(f"{stripped!r} in {package} is not supported")
        if depth == 1 and stripped == "}":
            depth = 0
            current = None
            continue
        if depth == 1:
            f = FIELD_RE.match(line)
            if not f:
                sys.exit(f"cannot parse field line {line!r} in {package}.{current}")
            label, ty, map_key, map_value, name, number, _opts = f.groups()
            if map_key:
                messages[current].append(("map", map_value, map_key, name, int(number)))
            else:
                messages[current].append((label or "optional", ty, None, name, int(number)))
    return package, messages


GO_STRUCT_RE = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
GO_SLICE_RE = re.compile(r"^type\s+(\w+)\s+\[\](\S+)\s*$")
GO_FIELD_RE = re.compile(r"^\s*(\w+)\s+(\S+)\s+`([^`]*)`")
GO_EMBEDDED_RE = re.compile(r"^\s*(\*?[\w.]+)\s+`([^`]*)`")


def parse_go(text):
    """Returns ({struct: {number: (json_name, omitempty, pointer)}}, {slice_type_names}).

    An embedded struct with `json:",inline"` has json_name "" (its fields join the parent's)."""
    structs = {}
    slices = set()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        s = GO_SLICE_RE.match(line)
        if s:
            slices.add(s.group(1))
        m = GO_STRUCT_RE.match(line)
        if not m:
            i += 1
            continue
        name = m.group(1)
        fields = {}
        i += 1
        while i < len(lines) and not lines[i].startswith("}"):
            f = GO_FIELD_RE.match(lines[i])
            e = GO_EMBEDDED_RE.match(lines[i])
            if f or e:
                if f:
                    _gname, gtype, tags = f.groups()
                else:
                    gtype, tags = e.groups()
                pb = re.search(r'protobuf:"([^"]*)"', tags)
                js = re.search(r'json:"([^"]*)"', tags)
                if pb and js and pb.group(1) != "-":
                    parts = pb.group(1).split(",")
                    number = int(parts[1])
                    jparts = js.group(1).split(",")
                    fields[number] = (
                        jparts[0],
                        "omitempty" in jparts[1:] or "omitzero" in jparts[1:],
                        gtype.startswith("*"),
                    )
            i += 1
        structs[name] = fields
        i += 1
    return structs, slices


def load(gitdir, ref, pkg, protos, gostructs, goslices):
    package, messages = parse_proto(git_show(gitdir, ref, f"{pkg}/generated.proto"))
    protos[package] = messages
    structs, slices = {}, set()
    for name in git_ls(gitdir, ref, pkg):
        if name.endswith(".go") and not name.endswith("_test.go"):
            s, sl = parse_go(git_show(gitdir, ref, f"{pkg}/{name}"))
            structs.update(s)
            slices |= sl
    gostructs[package] = structs
    goslices[package] = slices


def resolve(package, ty):
    if ty in SCALARS:
        return ty
    if ty.startswith("."):
        return ty[1:]
    return f"{package}.{ty}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--apimachinery", required=True)
    ap.add_argument("--ref", default="v0.33.9")
    args = ap.parse_args()

    protos, gostructs, goslices = {}, {}, {}
    for pkg in API_PACKAGES:
        load(args.api, args.ref, pkg, protos, gostructs, goslices)
    for pkg in APIMACHINERY_PACKAGES:
        load(args.apimachinery, args.ref, pkg, protos, gostructs, goslices)

    all_messages = {}
    for package, messages in protos.items():
        for name, fields in messages.items():
            full = f"{package}.{name}"
            if full not in SPECIAL:
                all_messages[full] = (package, name, fields)
    names = sorted(all_messages)
    index = {n: i for i, n in enumerate(names)}

    def ty_expr(package, ty):
        full = resolve(package, ty)
        if full in SCALARS:
            return f"Ty::{SCALARS[full]}"
        if full in SPECIAL:
            return f"Ty::{SPECIAL[full]}"
        if full not in index:
            sys.exit(f"unknown message type {full} (referenced from {package})")
        return f"Ty::Message({index[full]})"

    out = []
    out.append("// @generated by tools/gen_protobuf_schema.py from kubernetes/api and")
    out.append(f"// kubernetes/apimachinery at {args.ref} (generated.proto + Go types). Do not edit;")
    out.append("// regenerate (see the script's docstring for the command) and run `cargo fmt`.")
    out.append("")
    out.append("use super::table::{Field, Label, Message, Ty};")
    out.append("")
    out.append("const fn f(tag: u32, json: &'static str, ty: Ty, label: Label, omit_zero: bool) -> Field {")
    out.append("    Field {")
    out.extend(f"        {x}," for x in ["tag", "json", "ty", "label", "omit_zero"])
    out.append("    }")
    out.append("}")
    out.append("")
    out.append("/// Every decodable message, sorted by full proto name (a `Ty::Message` is an index here).")
    out.append("/// A field is `f(tag, json name, type, label, omit_zero)`.")
    out.append("#[rustfmt::skip]")
    out.append("pub static MESSAGES: &[Message] = &[")
    warnings = []
    for n in names:
        package, name, fields = all_messages[n]
        structs = gostructs[package]
        array_wrapper = False
        if name in structs:
            go = structs[name]
        elif name in goslices[package] and [f[3] for f in fields] == ["items"]:
            # A Go named slice (e.g. `type ExtraValue []string`): JSON is the bare array.
            go = {}
            array_wrapper = True
        else:
            go = {}
            warnings.append(f"no Go struct for {n}")
        field_exprs = []
        for label, ty, map_key, fname, number in sorted(fields, key=lambda f: f[4]):
            if array_wrapper:
                json_name, omit_zero = fname, False
            elif number in go:
                json_name, omitempty, pointer = go[number]
                omit_zero = omitempty and not pointer
            else:
                warnings.append(f"no Go field for {n}.{fname} = {number}")
                json_name, omit_zero = fname, False
            if json_name == "":
                if label != "optional" or not ty_expr(package, ty).startswith("Ty::Message"):
                    sys.exit(f"inline field {n}.{fname} is not an optional message")
                lab = "Label::Inline"
            elif label == "map":
                if map_key != "string":
                    sys.exit(f"map key {map_key} in {n}.{fname} is not supported")
                lab = "Label::Map"
            elif label == "repeated":
                lab = "Label::Repeated"
            else:
                lab = "Label::Optional"
            field_exprs.append(
                f'f({number}, "{json_name}", {ty_expr(package, ty)}, {lab}, {"true" if omit_zero else "false"}),'
            )
        out.append(
            f'    // {index[n]}\n    Message {{ name: "{n}", array_wrapper: {"true" if array_wrapper else "false"}, fields: &['
        )
        out.extend("        " + e for e in field_exprs)
        out.append("    ] },")
    out.append("];")
    print("\n".join(out))
    for w in warnings:
        print("warning:", w, file=sys.stderr)


if __name__ == "__main__":
    main()
