#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it.
#
#   bash scripts/test.sh            # the whole suite (what CI runs)
#   bash scripts/test.sh -k ledger  # extra arguments go to pytest
#
# Python packages go into ./.venv (created on first use), npm packages into
# ./node_modules from the committed lockfile. Nothing is installed globally.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "==> installing Python packages (.[dev])"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# The x402 SDK's sign-in-with-x needs signinwithethereum, whose pins (web3<8,
# eth-account<0.14) pip cannot resolve with ours; its code runs on them, so
# it goes in without its pins (its other needs are in .[dev]).
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps 'signinwithethereum==5.0.2'

# The dashboard's browser tests drive Debian's chromium through Playwright
# (installed with .[dev]); no browser is ever downloaded by Playwright.
if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium for the browser tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null
fi

echo "==> installing npm packages (anvil, solc) from package-lock.json"
npm ci --no-audit --no-fund --loglevel=error

bash scripts/setup_vllm.sh  # .venv-vllm: vLLM for the CPU, for the tests marked vllm

# Lint, format and strict types first: any finding fails the run. (The docs'
# Markdown is prose with sketches in it, so only Python files are formatted.)
echo "==> ruff check, ruff format --check, mypy --strict"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet --exclude '*.md' .
bash scripts/typecheck.sh >/dev/null || bash scripts/typecheck.sh
echo "==> running the test suite"
exec .venv/bin/python -m pytest "$@"
