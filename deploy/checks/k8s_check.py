#!/usr/bin/env python3
"""Validates one rendered chart (helmrender output) for one Kubernetes version:

* built-in kinds: `kubernetes-validate --strict -k VERSION`; a kind it has no schema for
  fails (it would only warn), except the Prometheus Operator kinds below;
* ServiceMonitor / PrometheusRule: deploy/checks/crd-schemas/*.json (see its README), and
  the PrometheusRule's groups must equal deploy/prometheus/alerts.yml and pass
  `promtool check rules`;
* the chart's promises (issue 15 item 3): probes on the admin port, grace period longer
  than preStop + drain, non-root, read-only root filesystem, hooks, TURN public address;
* every SWITCHBOARD_* variable it sets is one the product knows (the sources, or
  Docs/configuration.md, which lists SPEC §1's).

    k8s_check.py RENDERED.yaml KUBE_VERSION REPO_ROOT
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

CRD_KINDS = {"ServiceMonitor": "servicemonitor.json", "PrometheusRule": "prometheusrule.json"}


def known_variables(repo):
    """SWITCHBOARD_* names the product knows: the sources, and Docs/configuration.md (which
    lists SPEC §1's variables, those of commands still being built included)."""
    with open(os.path.join(repo, "Docs/configuration.md")) as f:
        names = set(re.findall(r"SWITCHBOARD_[A-Z0-9_]+", f.read()))
    for root, _, files in os.walk(os.path.join(repo, "Sources")):
        for name in files:
            if name.endswith(".swift"):
                with open(os.path.join(root, name), errors="replace") as f:
                    names |= set(re.findall(r'"(SWITCHBOARD_[A-Z0-9_]+)"', f.read()))
    return names


def env_names(doc):
    out = []

    def walk(x):
        if isinstance(x, dict):
            for c in x.get("containers", []) + x.get("initContainers", []):
                out.extend(e["name"] for e in c.get("env", []) or [])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)
    return out


def pod_spec(doc):
    return doc["spec"]["template"]["spec"]


def env_value(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value"), e.get("valueFrom")
    return None, None


def promises(docs, fail):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sig = [d for d in by_kind.get("Deployment", []) if d["metadata"]["labels"].get("app.kubernetes.io/component") == "signaling"]
    if len(sig) != 1:
        fail("expected one signaling Deployment")
        return
    dep = sig[0]
    spec = pod_spec(dep)
    c = spec["containers"][0]
    if c.get("args") != ["serve"]:
        fail("signaling container does not run `serve`")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("admin") != 9090 or ports.get("http") != 8080:
        fail("signaling ports must be http 8080 and admin 9090")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path or g.get("port") != "admin":
            fail(f"signaling {probe} must GET {path} on the admin port")
    drain = float(env_value(c, "SWITCHBOARD_DRAIN_TIMEOUT")[0])
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_sleep = float(pre[-1]) if pre and pre[0].endswith("sleep") else None
    if pre_sleep is None:
        fail("signaling container has no preStop sleep")
        pre_sleep = 0
    if not spec.get("terminationGracePeriodSeconds", 30) > drain + pre_sleep:
        fail(f"terminationGracePeriodSeconds {spec.get('terminationGracePeriodSeconds')} is not longer than preStop {pre_sleep} + drain {drain}")
    if not c.get("resources", {}).get("requests"):
        fail("signaling container has no resource requests")
    if not spec.get("topologySpreadConstraints") and "topology" not in json.dumps(spec.get("affinity", {})):
        fail("signaling pods are not spread over zones/hosts")
    if "replicas" in dep["spec"] and by_kind.get("HorizontalPodAutoscaler"):
        fail("replicas is set while an HPA manages the Deployment")
    for name in ("SWITCHBOARD_REDIS_URL", "SWITCHBOARD_DATABASE_URL", "SWITCHBOARD_MASTER_KEY", "SWITCHBOARD_ADMIN_TOKEN", "SWITCHBOARD_TURN_SECRETS"):
        value, ref = env_value(c, name)
        if not (ref or {}).get("secretKeyRef"):
            fail(f"{name} must come from a Secret")
    for d in docs:
        if d["kind"] in ("Deployment", "DaemonSet", "Job", "StatefulSet"):
            ps = pod_spec(d)
            if not ps.get("securityContext", {}).get("runAsNonRoot"):
                fail(f"{d['kind']} {d['metadata']['name']}: pods must run as non-root")
            for ct in ps["containers"]:
                sc = ct.get("securityContext", {})
                if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
                    fail(f"{d['kind']} {d['metadata']['name']}/{ct['name']}: read-only root filesystem, no privilege escalation")
                mounts = {m["mountPath"] for m in ct.get("volumeMounts", [])}
                if "/tmp" not in mounts:
                    fail(f"{d['kind']} {d['metadata']['name']}/{ct['name']}: no writable /tmp with a read-only root")
    jobs = by_kind.get("Job", [])
    for j in jobs:
        hook = j["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        if set(hook.split(",")) != {"pre-install", "pre-upgrade"}:
            fail("the migrate Job must be a pre-install,pre-upgrade hook")
        if pod_spec(j)["containers"][0].get("args") != ["migrate"]:
            fail("the migrate Job does not run `migrate`")
        for s in by_kind.get("Secret", []):
            a = s["metadata"].get("annotations", {})
            if "pre-install" not in a.get("helm.sh/hook", "") or int(a.get("helm.sh/hook-weight", "0")) >= int(j["metadata"]["annotations"].get("helm.sh/hook-weight", "0")):
                fail("the chart's Secret must be a hook created before the migrate Job")
    for ds in by_kind.get("DaemonSet", []):
        ps = pod_spec(ds)
        if not ps.get("hostNetwork") or ps.get("dnsPolicy") != "ClusterFirstWithHostNet":
            fail("the TURN DaemonSet must use hostNetwork with dnsPolicy ClusterFirstWithHostNet")
        c = ps["containers"][0]
        if c.get("args", [None])[0] != "turn":
            fail("the TURN DaemonSet does not run `turn`")
    for d in by_kind.get("Deployment", []):
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "turn":
            lbs = [s for s in by_kind.get("Service", []) if s["spec"].get("type") == "LoadBalancer"]
            if not lbs or not any(p["protocol"] == "UDP" for p in lbs[0]["spec"]["ports"]):
                fail("TURN as a Deployment needs a UDP LoadBalancer Service")
    jobs = set()
    for sm in by_kind.get("ServiceMonitor", []):
        for ep in sm["spec"]["endpoints"]:
            jobs |= {r.get("replacement") for r in ep.get("relabelings", []) if r.get("targetLabel") == "job"}
    if by_kind.get("ServiceMonitor") and (not jobs <= {"switchboard", "switchboard-turn"} or "switchboard" not in jobs):
        fail(f"ServiceMonitors must set job to switchboard / switchboard-turn (the alerts select them), got {sorted(jobs)}")
    for ing in by_kind.get("Ingress", []):
        a = ing["metadata"].get("annotations", {})
        if ing["spec"].get("ingressClassName") == "nginx" and int(a.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "60")) < 3600:
            fail("the nginx Ingress must keep WebSockets open (proxy-read-timeout ≥ 3600)")


def main(rendered, version, repo):
    problems = []
    fail = problems.append
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    builtin = [d for d in docs if d["kind"] not in CRD_KINDS]
    crds = [d for d in docs if d["kind"] in CRD_KINDS]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "builtin.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(builtin, f)
        r = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", version, path], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or "Couldn't find schema" in out or "ERROR" in out:
            fail(f"kubernetes-validate {version}:\n{out}")
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(repo, "deploy/prometheus/alerts.yml")) as f:
            alerts = yaml.safe_load(f)
        for d in crds:
            with open(os.path.join(here, "crd-schemas", CRD_KINDS[d["kind"]])) as f:
                schema = json.load(f)
            for e in jsonschema.Draft7Validator(schema).iter_errors(d):
                fail(f"{d['kind']} {d['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
            if d["kind"] == "PrometheusRule":
                if d["spec"]["groups"] != alerts["groups"]:
                    fail("PrometheusRule groups differ from deploy/prometheus/alerts.yml")
                rules = os.path.join(tmp, "rules.yml")
                with open(rules, "w") as f:
                    yaml.safe_dump({"groups": d["spec"]["groups"]}, f)
                r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
                if r.returncode != 0:
                    fail(f"promtool check rules (PrometheusRule): {r.stdout}{r.stderr}")
    known = known_variables(repo)
    for d in docs:
        for name in env_names(d):
            if name.startswith("SWITCHBOARD_") and name not in known:
                fail(f"{d['kind']} {d['metadata']['name']}: unknown variable {name}")
    for d in docs:
        if d["kind"] == "ConfigMap" and "switchboard.json" in d.get("data", {}):
            with open(os.path.join(repo, "deploy/grafana/switchboard.json")) as f:
                if json.loads(d["data"]["switchboard.json"]) != json.load(f):
                    fail("dashboard ConfigMap differs from deploy/grafana/switchboard.json")
    promises(docs, fail)
    for p in problems:
        print(f"{rendered} (k8s {version}): {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
