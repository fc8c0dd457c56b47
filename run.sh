#!/usr/bin/env bash
# Set up everything (first run: several minutes) and start the viewer on http://127.0.0.1:8000
# with embedded defaults: SQLite, in-process cache and channel layer, embedded job worker.
# Idempotent: a second run skips what is done. HOST and PORT override the address.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./run.sh [-h|--help]

Set up everything (first run: several minutes: a Python virtual environment with torch and
tiatoolbox, the browser libraries from npm), prepare the database and the demo case, then serve
the HER2-LADDER viewer. Idempotent: a second run skips what is done. It prints the demo logins
(kept in $LADDER_DATA_DIR/demo/logins.json).

Environment (all optional):
  HOST                 address to serve on (default 127.0.0.1)
  PORT                 port to serve on (default 8000)
  LADDER_VENV          the virtual environment to create or use (default ./.venv)
  LADDER_DATA_DIR      database, slides, analyses, models, demo data (default ./var)
  LADDER_ENV           development (default) or production
  LADDER_SECRET_KEY    Django secret key (default: random, kept in the data folder)
  LADDER_SLIDE_ROOTS   folders slides may be imported from by path (':' or ',' separated)
  DATABASE_URL         PostgreSQL instead of SQLite, e.g. postgres://user@127.0.0.1:5432/ladder
  REDIS_URL            Redis for the cache, channel layer and Celery (scale-out)
  LADDER_JOB_BACKEND   embedded (default without REDIS_URL) or celery
  LADDER_SEGMENTER     auto (default), nucleus-model, hovernet or classical
  LADDER_TIME_ZONE     time zone of the times shown (default UTC)
Every variable the product reads: README.md, section "Configuration".
USAGE
}

# Options first: --help must print and stop before anything is installed.
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")"
source scripts/bootstrap.sh

bootstrap_python requirements.txt
bootstrap_frontend
say "Preparing the database and the demo case"
"$PY" manage.py migrate --noinput -v0
"$PY" manage.py collectstatic --noinput -v0
"$PY" manage.py setup_demo
exec "$PY" manage.py serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
