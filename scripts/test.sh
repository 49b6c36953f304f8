#!/usr/bin/env bash
# Install Herald with its development tools into .venv and run every check and the whole test suite.
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
echo "== pytest"
exec .venv/bin/pytest "$@"
