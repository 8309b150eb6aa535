#!/usr/bin/env python3
"""Docs/configuration.md stays true to the code: every flag of every `switchboard` command
(swift-argument-parser @Option/@Flag in Sources/switchboard) and every SWITCHBOARD_*
variable the sources read is documented there.

    docs_check.py REPO_ROOT
"""
import os
import re
import sys


def kebab(name):
    return re.sub(r"(?<!^)([A-Z])", r"-\1", name).lower()


def main(repo):
    with open(os.path.join(repo, "Docs/configuration.md")) as f:
        docs = f.read()
    problems = []
    flags, variables = set(), set()
    for root, _, files in os.walk(os.path.join(repo, "Sources")):
        for name in sorted(files):
            if not name.endswith(".swift"):
                continue
            path = os.path.join(root, name)
            with open(path, errors="replace") as f:
                text = f.read()
            variables |= {(v, path) for v in re.findall(r'"(SWITCHBOARD_[A-Z0-9_]+)"', text)}
            if os.path.basename(os.path.dirname(path)) in ("switchboard", "Bench") and "ParsableCommand" in text:
                for m in re.finditer(r"@(Option|Flag)\(([^)]*(?:\([^)]*\)[^)]*)*)\)\s*var\s+(\w+)", text):
                    custom = re.search(r'customLong\("([^"]+)"\)', m.group(2))
                    flags.add((f"--{custom.group(1) if custom else kebab(m.group(3))}", path))
    for flag, path in sorted(flags):
        if f"`{flag}`" not in docs:
            problems.append(f"{os.path.relpath(path, repo)}: flag {flag} is not in Docs/configuration.md")
    for var, path in sorted(variables):
        if f"`{var}`" not in docs:
            problems.append(f"{os.path.relpath(path, repo)}: {var} is not in Docs/configuration.md")
    if not problems:
        print(f"INFO {len({f for f, _ in flags})} flags and {len({v for v, _ in variables})} variables of the sources, all documented")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
