#!/usr/bin/env bash
# Install Herald with its development tools into .venv and run every check and the whole test suite
# (Python 3.11), then a subset on Python 3.13 in .venv313 when no arguments are given.
# Needs PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) running; RabbitMQ (5672) for the
# amqp:// tests; Debian's chromium for the browser tests (installed here when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "could not install chromium: the browser tests will fail" >&2
  else
    echo "chromium is missing: run 'sudo apt-get install chromium' (the browser tests need it)" >&2
  fi
fi

echo "== ruff"
.venv/bin/ruff check api messaging workers channels herald tests bench
echo "== import contracts"
.venv/bin/lint-imports
echo "== mypy"
.venv/bin/mypy api messaging workers channels herald bench
echo "== pytest (Python 3.11)"
if [ "$#" -gt 0 ] || [ "${TEST_PY313:-1}" = "0" ]; then
  exec .venv/bin/pytest "$@"
fi
status=0
.venv/bin/pytest || status=$?

# Python 3.13, the newest requires-python allows: its own venv, every pin installed, then a fast
# subset that still crosses every route (both fuzzers), the parsers, the filter engine and the
# migrations. TEST_PY313=0 skips it; CI (.ci/run) sets TEST_REQUIRE_PY313=1 so a missing
# interpreter fails instead of skipping.
PY313=${PY313:-python3.13}
if ! "$PY313" -c pass >/dev/null 2>&1; then  # a pyenv shim without 3.13 selected: use the version itself
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13; do
    if [ -x "$candidate" ]; then PY313=$candidate; fi
  done
fi
if "$PY313" -c pass >/dev/null 2>&1; then
  echo "== pytest (Python 3.13, subset)"
  [ -x .venv313/bin/python ] || "$PY313" -m venv .venv313
  .venv313/bin/python -m pip install --quiet --upgrade pip
  .venv313/bin/python -m pip install --quiet -e '.[dev]'
  .venv313/bin/pytest tests/test_query.py tests/test_fields.py tests/test_migrations.py \
    tests/test_input_causes.py tests/test_unexpected_errors.py tests/test_trailing_slash.py \
    tests/test_openapi.py tests/test_fuzz_schema.py tests/test_fuzz_bodies.py tests/test_demo_ids.py || status=$?
elif [ "${TEST_REQUIRE_PY313:-0}" = "1" ]; then
  echo "$PY313 is missing: CI must prove Python 3.13 (pyenv install 3.13, or Debian's python3.13)" >&2
  status=1
else
  echo "$PY313 not found: skipping the Python 3.13 run" >&2
fi
exit "$status"
