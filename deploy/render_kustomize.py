#!/usr/bin/env python3
"""Render a kustomization of deploy/k8s where neither kustomize nor kubectl is installed.

    python3 deploy/render_kustomize.py deploy/k8s/overlays/cpu > cpu.yaml

It implements exactly the kustomize features that deploy/k8s uses, and refuses anything else
rather than ignore it:

- `resources`: YAML files (one or more documents) and folders holding a kustomization;
- `components`: folders holding a `kind: Component`, whose resources join the accumulated
  set and whose patches apply to it;
- `patches` with `path`: each document is merged into the resource of the same kind and name
  (and namespace, when the patch names one): maps merge key by key, lists of maps that all
  have a `name` merge item by item on it, other lists and scalars are replaced, and `null`
  deletes a key, as a strategic merge patch does for these shapes;
- `namespace`: set on every namespaced resource; a Namespace resource is renamed to it;
- `images`: `newName`, `newTag` and `digest` for containers and init containers of pod
  templates (Deployment, StatefulSet, DaemonSet, Job, CronJob) and Pods.

Needs PyYAML. `kubectl kustomize` gives the same documents (deploy/validate compares them when
kubectl is installed).
"""

from __future__ import annotations

import copy
import pathlib
import sys
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KNOWN_KEYS = {"apiVersion", "kind", "namespace", "resources", "components", "patches", "images"}
# Kinds without a namespace among those a kustomization here may hold.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "RuntimeClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ClusterTriggerAuthentication",
}


class RenderError(Exception):
    pass


def load_documents(path: pathlib.Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise RenderError(f"{path}: every document needs kind and metadata")
    return docs


def find_kustomization(folder: pathlib.Path) -> pathlib.Path:
    for name in KUSTOMIZATION_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise RenderError(f"{folder}: no kustomization file")


def resource_id(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return doc["kind"], meta.get("namespace", ""), meta.get("name", "")


def merge(base: Any, patch: Any) -> Any:
    """Merge `patch` into `base` (both already parsed) and return the result."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named_items(base) and _named_items(patch):
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            for i, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[i] = merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _named_items(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def apply_patches(docs: list[dict[str, Any]], patch_docs: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    for patch in patch_docs:
        kind, namespace, name = resource_id(patch)
        matches = [
            i
            for i, d in enumerate(docs)
            if d["kind"] == kind
            and d["metadata"].get("name") == name
            and (not namespace or d["metadata"].get("namespace", "") == namespace)
        ]
        if len(matches) != 1:
            raise RenderError(f"{origin}: patch for {kind}/{name} matches {len(matches)} resources, not 1")
        docs[matches[0]] = merge(docs[matches[0]], patch)
    return docs


def set_namespace(docs: list[dict[str, Any]], namespace: str) -> None:
    for d in docs:
        if d["kind"] == "Namespace":
            d["metadata"]["name"] = namespace
        elif d["kind"] not in CLUSTER_SCOPED:
            d["metadata"]["namespace"] = namespace


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    kind = doc["kind"]
    if kind == "Pod":
        return [spec]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return [spec.get("template", {}).get("spec", {})]
    if kind == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    return []


def split_image(image: str) -> tuple[str, str]:
    """Returns the name of an image reference and the rest (":tag", "@digest" or both)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        tag = ":" + tag
    return name, tag + ("@" + digest if digest else "")


def set_images(docs: list[dict[str, Any]], images: list[dict[str, Any]], origin: str) -> None:
    for rule in images:
        unknown = set(rule) - {"name", "newName", "newTag", "digest"}
        if unknown or "name" not in rule:
            raise RenderError(f"{origin}: images entries take name, newName, newTag, digest (got {sorted(rule)})")
        for doc in docs:
            for pod in pod_specs(doc):
                for key in ("containers", "initContainers"):
                    for container in pod.get(key) or []:
                        name, rest = split_image(container.get("image", ""))
                        if name != rule["name"]:
                            continue
                        name = rule.get("newName", name)
                        if "digest" in rule:
                            rest = "@" + rule["digest"]
                        elif "newTag" in rule:
                            rest = ":" + str(rule["newTag"])
                        container["image"] = name + rest


def render(folder: pathlib.Path, expect_kind: str = "Kustomization") -> list[dict[str, Any]]:
    kfile = find_kustomization(folder)
    with kfile.open(encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{kfile}: unsupported kustomize fields {sorted(unknown)}")
    kind = k.get("kind", "Kustomization")
    if kind != expect_kind:
        raise RenderError(f"{kfile}: expected kind {expect_kind}, found {kind}")

    docs: list[dict[str, Any]] = []
    for entry in k.get("resources") or []:
        path = (folder / entry).resolve()
        if path.is_dir():
            docs.extend(render(path))
        elif path.is_file():
            docs.extend(load_documents(path))
        else:
            raise RenderError(f"{kfile}: resource {entry} not found")
    for entry in k.get("components") or []:
        path = (folder / entry).resolve()
        if not path.is_dir():
            raise RenderError(f"{kfile}: component {entry} is not a folder")
        docs = render_component(path, docs)

    seen: set[tuple[str, str, str]] = set()
    for d in docs:
        rid = resource_id(d)
        if rid in seen:
            raise RenderError(f"{kfile}: {rid[0]}/{rid[2]} is defined twice")
        seen.add(rid)

    for entry in k.get("patches") or []:
        if set(entry) != {"path"}:
            raise RenderError(f"{kfile}: only `patches: - path: FILE` is supported")
        ppath = folder / entry["path"]
        docs = apply_patches(docs, load_documents(ppath), str(ppath))
    if k.get("namespace"):
        set_namespace(docs, k["namespace"])
    if k.get("images"):
        set_images(docs, k["images"], str(kfile))
    return docs


def render_component(folder: pathlib.Path, accumulated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A component's resources join the parent's, then its own transformations apply to all."""
    kfile = find_kustomization(folder)
    with kfile.open(encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{kfile}: unsupported kustomize fields {sorted(unknown)}")
    if k.get("kind") != "Component":
        raise RenderError(f"{kfile}: a component needs kind: Component")
    docs = list(accumulated)
    for entry in k.get("resources") or []:
        path = (folder / entry).resolve()
        docs.extend(render(path) if path.is_dir() else load_documents(path))
    for entry in k.get("patches") or []:
        if set(entry) != {"path"}:
            raise RenderError(f"{kfile}: only `patches: - path: FILE` is supported")
        ppath = folder / entry["path"]
        docs = apply_patches(docs, load_documents(ppath), str(ppath))
    if k.get("namespace"):
        set_namespace(docs, k["namespace"])
    if k.get("images"):
        set_images(docs, k["images"], str(kfile))
    return docs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} KUSTOMIZATION_DIR", file=sys.stderr)
        return 2
    try:
        docs = render(pathlib.Path(argv[1]).resolve())
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render_kustomize: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
