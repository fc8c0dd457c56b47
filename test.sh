#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite (extra arguments go to pytest).
# Real test data is read from ../shared/data (override with LADDER_TEST_DATA).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

bootstrap_python requirements-dev.txt
bootstrap_frontend
bootstrap_test_tools
say "Running the test suite"
exec "$PY" -m pytest "$@"
