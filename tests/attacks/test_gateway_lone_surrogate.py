"""Any caller crashes a request at ``farthing inference gateway`` into a 500 with a traceback by sending a JSON string holding a lone surrogate escape (``"\\ud800"``).

A real ``farthing inference gateway --free`` process in front of the fake
vLLM (a real server process). The body is valid UTF-8 and valid JSON (the
escape is plain ASCII), so it passes the gateway's UTF-8 and JSON checks;
it then fails when the gateway re-encodes it for the upstream's
``/tokenize`` (``UnicodeEncodeError: surrogates not allowed``), and the
caller gets ``500 Internal Server Error`` instead of a 400. The same body
reaches the paid gateway the same way before any 402 (no payment needed).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.inference.conftest import fake_vllm_process
from tests.inference.fake_vllm import MODEL
from tests.inference.test_cli import gateway_process

BODY = '{"model":"' + MODEL + '","messages":[{"role":"user","content":"\\ud800"}],"max_tokens":3}'


def test_a_lone_surrogate_is_a_400_not_a_500(tmp_path: Path) -> None:
    printed: list[str] = []
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, "--free"], tmp_path, printed) as (ready, _),
        httpx.Client(base_url=ready["url"], timeout=30) as http,
    ):
        fine = http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
        })  # fmt: skip
        assert fine.status_code == 200, fine.text
        answer = http.post(
            "/v1/chat/completions", content=BODY, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400, (answer.status_code, answer.text[:200])
    assert "Traceback" not in "".join(printed)
