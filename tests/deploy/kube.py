"""Reading deploy/kubernetes the way Kubernetes would: the kustomization's resources and its
generated ConfigMap, a container's environment with Secrets and ``$(VAR)`` references resolved,
and a schema check against the Kubernetes API of a given version."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OPTIONAL = DEPLOY / "optional"
# The oldest Kubernetes these manifests support (autoscaling/v2, policy/v1, the restricted Pod
# Security Standard are all older) and the newest whose schemas the validator ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")
KUBECTL = shutil.which("kubectl")

Doc = dict[str, Any]


def load_all(text: str) -> list[Doc]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def load_file(path: Path) -> list[Doc]:
    return load_all(path.read_text(encoding="utf-8"))


def kustomization() -> Doc:
    (doc,) = load_file(DEPLOY / "kustomization.yaml")
    return doc


def generated_configmaps() -> list[Doc]:
    """The ConfigMaps the kustomization's configMapGenerator makes (without the name's hash
    suffix, which kustomize adds and rewrites every reference to)."""
    maps = []
    for gen in kustomization().get("configMapGenerator", []):
        data = {Path(f).name: (DEPLOY / f).read_text(encoding="utf-8") for f in gen["files"]}
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"]},
                "data": data,
            }
        )
    return maps


def base_docs() -> list[Doc]:
    """Every object ``kubectl apply -k deploy/kubernetes`` creates, as written in the files."""
    docs = [doc for f in kustomization()["resources"] for doc in load_file(DEPLOY / f)]
    return docs + generated_configmaps()


def optional_docs() -> list[Doc]:
    return [doc for path in sorted(OPTIONAL.glob("*.yaml")) for doc in load_file(path)]


def render() -> list[Doc]:
    """``kubectl kustomize``: the objects exactly as ``kubectl apply -k`` sends them."""
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=True
    )
    return load_all(out.stdout)


def emulate_render() -> list[Doc]:
    """The kustomization's output for the features it uses, where kubectl is not installed:
    its namespace on every namespaced object, and each generated ConfigMap named with a hash of
    its data, every reference to it renamed; the image names replaced."""
    import copy
    import hashlib
    import json

    k = kustomization()
    docs = [copy.deepcopy(d) for f in k["resources"] for d in load_file(DEPLOY / f)]
    renames = {}
    for cm in generated_configmaps():
        digest = hashlib.sha256(json.dumps(cm["data"], sort_keys=True).encode()).hexdigest()
        renames[cm["metadata"]["name"]] = name = f"{cm['metadata']['name']}-{digest[:10]}"
        cm["metadata"]["name"] = name
        docs.append(cm)
    for doc in docs:
        if doc["kind"] != "Namespace" and k.get("namespace"):
            doc["metadata"]["namespace"] = k["namespace"]
        if doc["kind"] == "Deployment":
            images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in k.get("images", [])}
            for c in doc["spec"]["template"]["spec"]["containers"]:
                c["image"] = images.get(c["image"], c["image"])
            for volume in doc["spec"]["template"]["spec"].get("volumes", []):
                ref = volume.get("configMap")
                if ref and ref["name"] in renames:
                    ref["name"] = renames[ref["name"]]
    return docs


def find(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: Doc, name: str) -> Doc:
    (found,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == name]
    return found


def container_port(c: Doc, port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p.get("name") == port]
    return int(number)


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a variable defined earlier resolves, anything else is
    left as written."""
    return _REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def container_env(c: Doc, secrets: Mapping[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` first, then ``env`` in
    order, each value's ``$(VAR)`` resolved against the ones before it. ``secrets`` maps
    (Secret name, key) to a value; a required key that is missing fails the test, as the
    kubelet would refuse to start the container."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source.get("secretRef") or source.get("configMapRef")
        assert ref.get("optional"), f"envFrom {ref['name']}: only optional sources are expected"
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        key = (ref["name"], ref["key"])
        if key in secrets:
            env[var["name"]] = secrets[key]
        else:
            assert ref.get("optional"), f"required Secret key {key} not given"
    return env


def secret_refs(c: Doc) -> dict[str, tuple[str, str]]:
    """Environment variable -> (Secret, key) for every ``secretKeyRef``."""
    refs = {}
    for var in c.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[var["name"]] = (ref["name"], ref["key"])
    return refs


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_link_names(service: str, ports: Iterable[Doc]) -> set[str]:
    """The variables Kubernetes' service links put into every pod of the namespace."""
    base = service.upper().replace("-", "_")
    names = {f"{base}_SERVICE_HOST", f"{base}_SERVICE_PORT", f"{base}_PORT"}
    for p in ports:
        proto, number = p.get("protocol", "TCP"), p["port"]
        prefix = f"{base}_PORT_{number}_{proto}"
        names |= {prefix, f"{prefix}_PROTO", f"{prefix}_PORT", f"{prefix}_ADDR"}
        if p.get("name"):
            names.add(f"{base}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}")
    return names


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")
