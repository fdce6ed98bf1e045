"""Run the tiny-model builder (``tiny_model.py``) with the interpreter that has vLLM.

The builder needs torch, transformers and tokenizers, which live in vLLM's
environment (``.venv-vllm``), not in Farthing's; so it runs as a script by
path, in a subprocess with a bounded time. Nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Final

from farthing.inference.errors import ModelBuildError

__all__ = ["BUILDER_SCRIPT", "build_tiny_model"]

BUILDER_SCRIPT: Final = Path(__file__).with_name("tiny_model.py")
_OUTPUT_TAIL_CHARS: Final = 2000


def build_tiny_model(
    out: Path, *, python: Path, seed: int = 0, force: bool = False, timeout_s: float = 600.0
) -> Path:
    """Build (or reuse) the tiny model in ``out``; return its directory."""
    if not python.exists():
        raise ModelBuildError(
            f"no Python interpreter at {python}; run bash scripts/setup_vllm.sh or pass --python"
        )
    argv = [str(python), str(BUILDER_SCRIPT), "--out", str(out), "--seed", str(seed)]
    if force:
        argv.append("--force")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ModelBuildError(
            f"the tiny-model builder did not finish within {timeout_s:g} s"
        ) from None
    output = (proc.stdout + proc.stderr)[-_OUTPUT_TAIL_CHARS:]
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelBuildError(f"the tiny-model builder failed: {last}", output=output)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        built = Path(json.loads(lines[-1])["model"])
    except (IndexError, KeyError, ValueError):
        raise ModelBuildError(
            "the tiny-model builder did not report where it built", output=output
        ) from None
    return built
