# Shared set-up steps for ./run.sh and ./test.sh (sourced, not run). Idempotent: each step
# leaves a stamp and is skipped while its inputs are unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LADDER_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "Python 3.11 is required (Django 5.2 LTS; torch/tiatoolbox wheels)." >&2
  return 1
}

# bootstrap_python REQUIREMENTS_FILE: a venv with exactly what the file lists.
bootstrap_python() {
  local requirements="$ROOT/$1"
  if [ ! -x "$PY" ]; then
    say "Creating virtual environment $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  local stamp="$VENV/.ladder-$(basename "$requirements").sha256"
  local digest
  digest="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    say "Installing Python packages from $(basename "$requirements") (first time: several minutes, torch is large)"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -r "$requirements"
    echo "$digest" > "$stamp"
  fi
}

# Browser libraries from npm, copied into static/vendor (nothing from a CDN at run time).
bootstrap_frontend() {
  local stamp="$ROOT/node_modules/.ladder-lock.sha256"
  local digest
  digest="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    command -v npm >/dev/null 2>&1 || { echo "npm (Node.js) is required for the browser libraries." >&2; return 1; }
    say "Installing browser libraries from npm"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$digest" > "$stamp"
  fi
  "$PY" "$ROOT/scripts/vendor_static.py"
}

# Debian's Chromium for the end-to-end tests (Playwright never downloads a browser here) and
# docker-compose to validate docker/compose.yml.
bootstrap_test_tools() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "Installing ${missing[*]} from Debian for the tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} missing and cannot be installed here; the tests that need them are skipped" >&2
  fi
}
