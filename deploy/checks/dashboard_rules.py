#!/usr/bin/env python3
"""Writes every query of the Grafana dashboard as a Prometheus recording rule, with Grafana's
variables replaced ($__rate_interval → 5m, $instance → .*), so `promtool check rules` parses
each one as PromQL.

    dashboard_rules.py deploy/grafana/switchboard.json > rules.yml
"""
import json
import re
import sys

import yaml

with open(sys.argv[1]) as f:
    dash = json.load(f)
rules = []


def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$instance", ".*")
            if "$" in re.sub(r"\{\{[^}]*\}\}", "", expr):
                sys.exit(f"panel {p['title']!r}: unknown variable in {expr}")
            rules.append({"record": f"dashboard:panel{p['id']}:{t['refId'].lower()}", "expr": expr})
        walk(p.get("panels", []))


walk(dash["panels"])
yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sys.stdout, sort_keys=False)
