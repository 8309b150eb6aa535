#!/usr/bin/env python3
"""Every metric the dashboard and the alerts query must be one a running node exports.

    metric_names.py METRICS.txt REPO_ROOT

METRICS.txt is a scrape of a live node's /metrics (Prometheus text format). Checked:
* each `switchboard_*` name in an alert expression (deploy/prometheus/alerts.yml) or a
  dashboard query (deploy/grafana/switchboard.json) is a series of the scrape, unless it is
  listed in expected-later-metrics.txt (names of work still being built);
* label names used in selectors and `by (…)` exist on that metric in the scrape;
* Docs/metrics.md documents every exported metric, every expected-later one and every alert.
`up` is Prometheus's own and always allowed.
"""
import json
import os
import re
import sys

import yaml

NAME = re.compile(r"\b(switchboard_[a-zA-Z0-9_]+)\b")
TARGET_LABELS = {"job", "instance"}


def parse_exposition(text):
    series, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
            if m:
                labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
                series.setdefault(m.group(1), set()).update(labels)
    return series, types


def family(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return name


def expressions(repo):
    out = []
    with open(os.path.join(repo, "deploy/prometheus/alerts.yml")) as f:
        for g in yaml.safe_load(f)["groups"]:
            for r in g["rules"]:
                out.append((f"alert {r.get('alert') or r.get('record')}", str(r["expr"])))
    with open(os.path.join(repo, "deploy/grafana/switchboard.json")) as f:
        dash = json.load(f)

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p['title']!r}", t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            out.append((f"variable {v['name']}", v["definition"]))
    return out


def main(metrics_path, repo):
    with open(metrics_path) as f:
        series, types = parse_exposition(f.read())
    later = {}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected-later-metrics.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                later[line] = True
    problems, notes = [], []
    used = {}
    for where, expr in expressions(repo):
        names = set(NAME.findall(expr))
        for n in names:
            used.setdefault(n, []).append(where)
            if n not in series and n not in later:
                problems.append(f"{where}: {n} is not exported by the node (and not in expected-later-metrics.txt)")
        # labels in selectors: name{label="…", …}
        for n, sel in re.findall(r"(switchboard_[a-zA-Z0-9_]+)\{([^}]*)\}", expr):
            if n in series:
                for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel):
                    if label not in series[n] | TARGET_LABELS:
                        problems.append(f"{where}: {n} has no label {label!r} (it has {sorted(series[n]) or 'none'})")
        # labels in by (…) when the expression reads one exported metric family
        fams = {family(n, types) for n in names}
        if len(fams) == 1 and all(n in series for n in names):
            have = set().union(*(series[n] for n in names)) | TARGET_LABELS
            for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                for label in (x.strip() for x in group.split(",") if x.strip()):
                    if label not in have:
                        problems.append(f"{where}: groups {sorted(fams)[0]} by {label!r}, which it does not have")
    for n in later:
        if n in series:
            notes.append(f"{n} is exported now: delete it from deploy/checks/expected-later-metrics.txt")
        if n not in used:
            notes.append(f"{n} is in expected-later-metrics.txt but used by no alert or panel")
    with open(os.path.join(repo, "Docs/metrics.md")) as f:
        docs = f.read()
    exported = {family(n, types) for n in series if n.startswith("switchboard_")}
    for n in sorted(exported | set(later)):
        if f"`{n}`" not in docs:
            problems.append(f"Docs/metrics.md does not document {n}")
    with open(os.path.join(repo, "deploy/prometheus/alerts.yml")) as f:
        alerts = [r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    for a in alerts:
        if not re.search(rf"^#+ .*\b{a}\b", docs, re.M):
            problems.append(f"Docs/metrics.md has no section for alert {a}")
    print(f"INFO metric names: {len(used)} used, {len([n for n in used if n in series])} exported now, "
          f"{len([n for n in used if n in later and n not in series])} expected later; {len(exported)} families exported")
    for n in notes:
        print(f"NOTE: {n}")
    for p in problems:
        print(f"metric names: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
