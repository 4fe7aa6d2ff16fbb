#!/usr/bin/env python3
"""Checks of rendered reelq manifests that the Kubernetes schemas cannot make.

    python3 deploy/check_manifests.py rendered.yaml [more.yaml ...]

Each file is one rendered installation (all its documents). kubernetes-validate knows no
custom resources, so this checks their structure and references itself:

- ScaledObject (keda.sh/v1alpha1): spec.scaleTargetRef.name names a Deployment of the file;
  spec.triggers is a non-empty list whose items have a `type` and a non-empty `metadata` map
  with string values and an `authenticationRef.name` naming a TriggerAuthentication of the
  file; rabbitmq triggers use protocol http and mode QueueLength on a queue; replica bounds are
  ordered.
- TriggerAuthentication (keda.sh/v1alpha1): spec.secretTargetRef items have parameter, name
  and key, and the Secret with that key is in the file.
- ServiceMonitor (monitoring.coreos.com/v1): a selector that matches a Service of the file,
  endpoints whose port that Service names, and token Secrets (authorization.credentials) that exist.

and a few rules of reelq's own: every configMapRef/secretRef exists, worker pods' grace period
is longer than REELQ__WORKER__SHUTDOWN_DEADLINE_SECS, the api leaves migrations to the Job.
Needs PyYAML. Exits 1 listing every problem.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

KEDA = "keda.sh/v1alpha1"
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"
DEFAULT_SHUTDOWN_DEADLINE_SECS = 30  # worker.shutdown_deadline_secs in config/reference.toml


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def secret_keys(secret: dict[str, Any]) -> set[str]:
    return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        op = expr.get("operator")
        if op == "In" and value not in expr.get("values", []):
            return False
        if op == "NotIn" and value in expr.get("values", []):
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def check_scaled_objects(docs, problems):
    deployments = by_kind(docs, "Deployment")
    auths = by_kind(docs, "TriggerAuthentication")
    for name, so in by_kind(docs, "ScaledObject").items():
        where = f"ScaledObject/{name}"
        if so.get("apiVersion") != KEDA:
            problems.append(f"{where}: apiVersion must be {KEDA}")
        spec = so.get("spec") or {}
        target = (spec.get("scaleTargetRef") or {}).get("name")
        if not target:
            problems.append(f"{where}: spec.scaleTargetRef.name is required")
        elif target not in deployments:
            problems.append(f"{where}: scaleTargetRef names Deployment {target}, which is not in the manifests")
        elif "replicas" in (deployments[target].get("spec") or {}):
            problems.append(f"{where}: Deployment {target} sets replicas, which would fight the autoscaler on every apply")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi and hi >= 1):
            problems.append(f"{where}: replica bounds {lo}..{hi} are not 0 <= min <= max, max >= 1")
        triggers = spec.get("triggers")
        if not isinstance(triggers, list) or not triggers:
            problems.append(f"{where}: spec.triggers must be a non-empty list")
            continue
        for i, trig in enumerate(triggers):
            tw = f"{where} trigger {trig.get('name', i)}"
            if not trig.get("type"):
                problems.append(f"{tw}: type is required")
            meta = trig.get("metadata")
            if not isinstance(meta, dict) or not meta:
                problems.append(f"{tw}: metadata must be a non-empty map")
                meta = {}
            for key, value in meta.items():
                if not isinstance(value, str):
                    problems.append(f"{tw}: metadata.{key} must be a string (quote it)")
            auth = (trig.get("authenticationRef") or {}).get("name")
            if not auth:
                problems.append(f"{tw}: authenticationRef.name is required")
            elif auth not in auths:
                problems.append(f"{tw}: authenticationRef names TriggerAuthentication {auth}, which is not in the manifests")
            if trig.get("type") == "rabbitmq":
                if meta.get("protocol") != "http":
                    problems.append(f"{tw}: protocol must be http (counts ready + unacknowledged messages)")
                if meta.get("mode") != "QueueLength":
                    problems.append(f"{tw}: mode must be QueueLength")
                if not meta.get("queueName"):
                    problems.append(f"{tw}: queueName is required")
                if meta.get("excludeUnacknowledged", "false") != "false":
                    problems.append(f"{tw}: excludeUnacknowledged would let running jobs lose their workers")
                try:
                    if float(meta.get("value", "")) <= 0:
                        raise ValueError
                except ValueError:
                    problems.append(f"{tw}: value must be a positive number")


def check_trigger_authentications(docs, problems):
    secrets = by_kind(docs, "Secret")
    for name, ta in by_kind(docs, "TriggerAuthentication").items():
        where = f"TriggerAuthentication/{name}"
        if ta.get("apiVersion") != KEDA:
            problems.append(f"{where}: apiVersion must be {KEDA}")
        refs = (ta.get("spec") or {}).get("secretTargetRef")
        if not isinstance(refs, list) or not refs:
            problems.append(f"{where}: spec.secretTargetRef must be a non-empty list")
            continue
        for ref in refs:
            missing = [k for k in ("parameter", "name", "key") if not ref.get(k)]
            if missing:
                problems.append(f"{where}: secretTargetRef item lacks {', '.join(missing)}")
            elif ref["name"] not in secrets:
                problems.append(f"{where}: Secret {ref['name']} is not in the manifests")
            elif ref["key"] not in secret_keys(secrets[ref["name"]]):
                problems.append(f"{where}: Secret {ref['name']} has no key {ref['key']}")


def check_service_monitors(docs, problems):
    services = by_kind(docs, "Service")
    secrets = by_kind(docs, "Secret")
    for name, sm in by_kind(docs, "ServiceMonitor").items():
        where = f"ServiceMonitor/{name}"
        if sm.get("apiVersion") != PROMETHEUS_OPERATOR:
            problems.append(f"{where}: apiVersion must be {PROMETHEUS_OPERATOR}")
        spec = sm.get("spec") or {}
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not selector:
            problems.append(f"{where}: spec.selector is required")
            continue
        matched = [s for s in services.values() if labels_match(selector, s["metadata"].get("labels") or {})]
        if not matched:
            problems.append(f"{where}: selector matches no Service")
        endpoints = spec.get("endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            problems.append(f"{where}: spec.endpoints must be a non-empty list")
            continue
        for ep in endpoints:
            port = ep.get("port")
            for svc in matched:
                if port not in {p.get("name") for p in svc["spec"].get("ports", [])}:
                    problems.append(f"{where}: Service {svc['metadata']['name']} has no port named {port}")
            token = ep.get("bearerTokenSecret") or (ep.get("authorization") or {}).get("credentials")
            if token:
                if token.get("name") not in secrets:
                    problems.append(f"{where}: bearer token Secret {token.get('name')} is not in the manifests")
                elif token.get("key") not in secret_keys(secrets[token["name"]]):
                    problems.append(f"{where}: Secret {token['name']} has no key {token.get('key')}")


def pod_spec(doc):
    spec = doc.get("spec") or {}
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return (spec.get("template") or {}).get("spec") or {}
    return None


def container_env(container, configmaps, secrets) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update((configmaps.get(source["configMapRef"]["name"]) or {}).get("data") or {})
        if "secretRef" in source:
            s = secrets.get(source["secretRef"]["name"]) or {}
            env.update({k: "(secret)" for k in secret_keys(s)})
    for var in container.get("env") or []:
        env[var["name"]] = var.get("value", "(from reference)")
    return env


def check_workloads(docs, problems):
    configmaps = by_kind(docs, "ConfigMap")
    secrets = by_kind(docs, "Secret")
    for doc in docs:
        pod = pod_spec(doc)
        if pod is None:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            for source in container.get("envFrom") or []:
                for kind, store in (("configMapRef", configmaps), ("secretRef", secrets)):
                    ref = source.get(kind)
                    if ref and ref["name"] not in store and not ref.get("optional"):
                        problems.append(f"{where}: {kind} {ref['name']} is not in the manifests")
            env = container_env(container, configmaps, secrets)
            command = (container.get("command") or []) + (container.get("args") or [])
            image = container.get("image", "")
            if "worker" in image:
                deadline = int(env.get("REELQ__WORKER__SHUTDOWN_DEADLINE_SECS", DEFAULT_SHUTDOWN_DEADLINE_SECS))
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace <= deadline:
                    problems.append(
                        f"{where}: terminationGracePeriodSeconds {grace} must exceed the drain deadline {deadline}"
                    )
            if "/api" in image and doc["kind"] == "Deployment" and command != ["migrate"]:
                if env.get("REELQ__DATABASE__RUN_MIGRATIONS") != "false":
                    problems.append(f"{where}: set REELQ__DATABASE__RUN_MIGRATIONS=false; the migrations Job owns the schema")
            if "REELQ__DATABASE__URL" not in env:
                problems.append(f"{where}: container {container['name']} gets no REELQ__DATABASE__URL")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(f"usage: {argv[0]} RENDERED.yaml...", file=sys.stderr)
        return 2
    failed = False
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        problems: list[str] = []
        check_scaled_objects(docs, problems)
        check_trigger_authentications(docs, problems)
        check_service_monitors(docs, problems)
        check_workloads(docs, problems)
        kinds = sorted({d["kind"] for d in docs if d["kind"] in {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}})
        if problems:
            failed = True
            for p in problems:
                print(f"{path}: {p}")
        else:
            print(f"{path}: ok ({len(docs)} resources; custom resources checked: {', '.join(kinds) or 'none'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
