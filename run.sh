#!/usr/bin/env bash
# Set up everything (first run: several minutes) and start the viewer on http://127.0.0.1:8000
# with embedded defaults: SQLite, in-process cache and channel layer, embedded job worker.
# Idempotent: a second run skips what is done. HOST and PORT override the address.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

bootstrap_python requirements.txt
bootstrap_frontend
say "Preparing the database and the demo case"
"$PY" manage.py migrate --noinput -v0
"$PY" manage.py collectstatic --noinput -v0
"$PY" manage.py setup_demo
exec "$PY" manage.py serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
