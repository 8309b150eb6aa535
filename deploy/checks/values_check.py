#!/usr/bin/env python3
"""Validates Helm values against the chart's values.schema.json the way `helm` does: the
chart's values.yaml, then each -f file merged over it (maps merge key by key, a null
removes the key), the result checked with the schema's draft (helmrender does not read
values.schema.json, so this is the check).

    values_check.py CHART [VALUES.yaml ...]     # exit 1 if the merged values are refused
"""
import json
import sys

import jsonschema
import yaml


def merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def main(chart, files):
    with open(f"{chart}/values.schema.json") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    with open(f"{chart}/values.yaml") as f:
        values = yaml.safe_load(f) or {}
    for name in files:
        with open(name) as f:
            values = merge(values, yaml.safe_load(f) or {})
    errors = sorted(cls(schema).iter_errors(values), key=lambda e: list(e.absolute_path))
    for e in errors:
        where = ".".join(str(p) for p in e.absolute_path) or "(top)"
        print(f"values{' + ' + ' + '.join(files) if files else ''}: {where}: {e.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
