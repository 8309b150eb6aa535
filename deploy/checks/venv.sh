# Sourced by scripts/check-deploy and scripts/image-check: a venv with the pinned Python
# tools of deploy/checks/requirements.txt, reused while the requirements do not change.
# Sets DEPLOY_PY (its python) and puts its bin/ first on PATH.
deploy_venv() {
  local req="$1/deploy/checks/requirements.txt"
  local venv="${DEPLOY_VENV:-/tmp/switchboard-deploy-venv}"
  local stamp="$venv/.requirements.sha256"
  local want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
  fi
  DEPLOY_PY="$venv/bin/python"
  PATH="$venv/bin:$PATH"
  export DEPLOY_PY PATH
}

# apt packages, installed only when a command is missing: need_apt COMMAND PACKAGE...
need_apt() {
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
