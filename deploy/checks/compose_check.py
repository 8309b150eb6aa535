#!/usr/bin/env python3
"""The topology docker-compose.yml promises (SPEC §8, issue 15 item 2), beyond what the
compose-spec schema checks: Redis, PostgreSQL, a one-shot migrate that the nodes wait for,
at least two signaling nodes in cluster mode sharing their secrets, nginx in front of all
of them passing WebSockets, a TURN node on the host network, Prometheus scraping every
node with the alert rules loaded — and every SWITCHBOARD_* variable a known one.

    compose_check.py REPO_ROOT
"""
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_check import known_variables  # noqa: E402


def main(repo):
    problems = []
    fail = problems.append
    with open(os.path.join(repo, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]

    def command(s):
        c = services[s].get("command", [])
        return c if isinstance(c, list) else c.split()

    for name in ("redis", "postgres", "migrate", "nginx", "prometheus"):
        if name not in services:
            fail(f"no `{name}` service")
    nodes = [s for s in services if command(s)[:1] == ["serve"]]
    turns = [s for s in services if command(s)[:1] == ["turn"]]
    if len(nodes) < 2:
        fail(f"expected at least two signaling nodes, found {nodes}")
    if len(turns) != 1:
        fail(f"expected one TURN node, found {turns}")
    if command("migrate")[:1] != ["migrate"] or services["migrate"].get("restart") != "no":
        fail("`migrate` must run `migrate` once (restart: \"no\")")
    shared = {}
    for s in nodes:
        env = services[s].get("environment", {})
        for var in ("SWITCHBOARD_REDIS_URL", "SWITCHBOARD_DATABASE_URL", "SWITCHBOARD_MASTER_KEY", "SWITCHBOARD_ADMIN_TOKEN", "SWITCHBOARD_TURN_SECRETS"):
            if var not in env:
                fail(f"{s}: {var} is not set")
            shared.setdefault(var, set()).add(env.get(var))
        dep = services[s].get("depends_on", {})
        if dep.get("migrate", {}).get("condition") != "service_completed_successfully":
            fail(f"{s} must wait for migrate to complete")
        grace = services[s].get("stop_grace_period", "10s")
        drain = float(env.get("SWITCHBOARD_DRAIN_TIMEOUT", 30))
        if float(re.sub(r"s$", "", grace)) <= drain:
            fail(f"{s}: stop_grace_period {grace} is not longer than the drain timeout {drain}")
    for var, values in shared.items():
        if len(values) > 1:
            fail(f"signaling nodes do not share {var}")
    for t in turns:
        if services[t].get("network_mode") != "host":
            fail(f"{t}: the TURN node needs network_mode: host for its relay range")
    known = known_variables(repo)
    for s, svc in services.items():
        env = svc.get("environment", {}) or {}
        for var in (env if isinstance(env, dict) else [e.split("=")[0] for e in env]):
            if var.startswith("SWITCHBOARD_") and var not in known:
                fail(f"{s}: unknown variable {var}")

    with open(os.path.join(repo, "deploy/nginx/switchboard.conf")) as f:
        nginx = f.read()
    upstream = re.findall(r"^\s*server\s+([\w.-]+):8080", nginx, re.M)
    if sorted(upstream) != sorted(nodes):
        fail(f"nginx upstream {upstream} is not the signaling nodes {nodes}")
    for needle in ("proxy_http_version 1.1", "proxy_set_header Upgrade $http_upgrade", "proxy_set_header Connection $connection_upgrade",
                   "proxy_read_timeout 3600s"):
        if needle not in nginx:
            fail(f"nginx config lacks `{needle}`")
    nginx_mounts = " ".join(services["nginx"].get("volumes", []))
    if "deploy/nginx/switchboard.conf" not in nginx_mounts:
        fail("nginx does not mount deploy/nginx/switchboard.conf")

    with open(os.path.join(repo, "deploy/prometheus/prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    jobs = {j["job_name"]: [t for sc in j.get("static_configs", []) for t in sc["targets"]] for j in prom["scrape_configs"]}
    want = sorted(f"{s}:9090" for s in nodes)
    if sorted(jobs.get("switchboard", [])) != want:
        fail(f"prometheus job `switchboard` scrapes {jobs.get('switchboard')}, not {want}")
    turn_admin = services[turns[0]]["environment"].get("SWITCHBOARD_ADMIN_PORT", "9090") if turns else None
    if turns and not any(t.endswith(f":{turn_admin}") for t in jobs.get("switchboard-turn", [])):
        fail(f"prometheus job `switchboard-turn` does not scrape the TURN node's admin port {turn_admin}")
    if "alerts.yml" not in prom.get("rule_files", []):
        fail("prometheus does not load alerts.yml")

    for p in problems:
        print(f"docker-compose.yml: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
