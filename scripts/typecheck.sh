#!/usr/bin/env bash
# Strict mypy over the installed `farthing` namespace.
#
# The repository's folders (wallet/, ledger/, …) install as farthing.wallet,
# farthing.ledger, … through setuptools package-dir, which mypy cannot follow
# in an editable install. This script lays out a tree of symbolic links with
# the installed shape and checks that.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
tree="${root}/.typecheck"
rm -rf "${tree}"
mkdir -p "${tree}/farthing"
for f in farthing/*.py; do ln -s "${root}/${f}" "${tree}/farthing/"; done
for d in farthing/*/; do
    d="${d%/}"
    [ "${d##*/}" = "__pycache__" ] || ln -s "${root}/${d}" "${tree}/farthing/${d##*/}"
done
for d in wallet ledger paywall agents inference contracts dashboard jobs; do ln -s "${root}/${d}" "${tree}/farthing/${d}"; done
cd "${tree}"
PYTHON="${PYTHON:-python3}"
[ -x "${root}/.venv/bin/python" ] && PYTHON="${root}/.venv/bin/python"
exec "${PYTHON}" -m mypy --strict --config-file "${root}/pyproject.toml" --cache-dir "${root}/.mypy_cache" -p farthing "$@"
