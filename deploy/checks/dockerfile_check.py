#!/usr/bin/env python3
"""Parses the top-level Dockerfile with the `dockerfile` package (a wrapper of BuildKit's
own parser) and checks what the parser alone lets through: unknown instructions, missing
arguments, stages referenced before they exist, and the promises Docs/deploy.md makes about
the image (a Swift 6 bookworm builder with the static stdlib, a debian:12-slim runtime,
a numeric non-root USER, the switchboard ENTRYPOINT, no HEALTHCHECK).

    dockerfile_check.py Dockerfile            # check; exit 1 with the reasons
    dockerfile_check.py --runtime Dockerfile  # print the runtime stage as JSON (for image-check)
"""
import json
import re
import sys

import dockerfile

INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}


def stages(commands):
    """[(name, base, [commands])] in order, with ARG defaults substituted into FROM."""
    args, out = {}, []
    for c in commands:
        if c.cmd == "ARG" and not out:
            for v in c.value:
                k, _, d = v.partition("=")
                args[k] = d
        elif c.cmd == "FROM":
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), c.value[0])
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else str(len(out))
            out.append((name, base, []))
        elif out:
            out[-1][2].append(c)
    return out


def check(path):
    errors = []
    try:
        commands = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        return [f"parse error: {e}"]
    seen_from = False
    for c in commands:
        where = f"line {c.start_line}: {c.original.strip()[:60]}"
        if c.cmd not in INSTRUCTIONS:
            errors.append(f"{where}: unknown instruction {c.cmd}")
        if not c.value or all(not v.strip() for v in c.value):
            errors.append(f"{where}: {c.cmd} without arguments")
        if c.cmd == "FROM":
            seen_from = True
        elif c.cmd != "ARG" and not seen_from:
            errors.append(f"{where}: {c.cmd} before the first FROM")
        if c.cmd in ("COPY", "ADD") and len(c.value) < 2:
            errors.append(f"{where}: {c.cmd} needs a source and a destination")
        if c.cmd == "ENV" and len(c.value) % 2:
            errors.append(f"{where}: ENV without a value")
    st = stages(commands)
    names = [s[0] for s in st]
    for i, (_, _, cmds) in enumerate(st):
        for c in cmds:
            for f in c.flags:
                if f.startswith("--from=") and f[7:] not in names[:i]:
                    errors.append(f"line {c.start_line}: --from={f[7:]} is not an earlier stage")
    if len(st) < 2:
        return errors + ["expected a multi-stage build (build + runtime)"]
    (_, build_base, build_cmds), (_, run_base, run_cmds) = st[0], st[-1]
    if not re.fullmatch(r"swift:6\.\d+(\.\d+)?-bookworm", build_base):
        errors.append(f"build stage base {build_base!r} is not swift:6.x-bookworm")
    build_runs = " ".join(" ".join(c.value) for c in build_cmds if c.cmd == "RUN")
    for needle in ("--static-swift-stdlib", "--product switchboard", "-c release", "libhiredis-dev"):
        if needle not in build_runs:
            errors.append(f"build stage does not run {needle}")
    if run_base != "debian:12-slim":
        errors.append(f"runtime base {run_base!r} is not debian:12-slim")
    users = [c.value[0] for c in run_cmds if c.cmd == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        errors.append("runtime stage must end as a numeric non-root USER (Kubernetes runAsNonRoot checks the uid)")
    entry = [c for c in run_cmds if c.cmd == "ENTRYPOINT"]
    if not entry or not entry[-1].json or entry[-1].value[0] != "/usr/local/bin/switchboard":
        errors.append('runtime ENTRYPOINT must be ["/usr/local/bin/switchboard"] (exec form)')
    if any(c.cmd == "HEALTHCHECK" for c in run_cmds):
        errors.append("no HEALTHCHECK: orchestrators use the admin port's probes")
    return errors


def runtime(path):
    """The runtime stage, as image-check replays it."""
    st = stages(dockerfile.parse_file(path))
    name, base, cmds = st[-1]
    env, user, workdir, runs, copies = {}, "0", "/", [], []
    for c in cmds:
        if c.cmd == "RUN":
            runs.append(" ".join(c.value))
        elif c.cmd == "ENV":
            env.update(dict(zip(c.value[0::2], c.value[1::2])))
        elif c.cmd == "USER":
            user = c.value[0]
        elif c.cmd == "WORKDIR":
            workdir = c.value[0]
        elif c.cmd == "COPY":
            copies.append({"flags": list(c.flags), "args": list(c.value)})
    entry = next((list(c.value) for c in reversed(cmds) if c.cmd == "ENTRYPOINT"), [])
    return {"stage": name, "base": base, "runs": runs, "env": env, "user": user, "workdir": workdir,
            "copies": copies, "entrypoint": entry}


if __name__ == "__main__":
    if sys.argv[1] == "--runtime":
        print(json.dumps(runtime(sys.argv[2]), indent=1))
        sys.exit(0)
    problems = check(sys.argv[1])
    for p in problems:
        print(f"{sys.argv[1]}: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
