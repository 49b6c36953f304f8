#!/usr/bin/env bash
# The long fuzz run: schemathesis over every operation of Herald's OpenAPI document and the raw-body
# fuzzers, FUZZ_EXAMPLES examples each (default 200; the suite's bounded run uses 8).
# Needs the test services (PostgreSQL, Redis) as scripts/test.sh does. Prints the case counts.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-200}
exec .venv/bin/pytest -q -s tests/test_fuzz_schema.py tests/test_fuzz_bodies.py "$@"
