"""With a real vLLM serving the tiny model, a delivery's review is structured output that fits the verdict.

The tiny model's weights are random, so nothing here reads what it decides:
the answer must come back as a valid ``ReviewVerdict`` held to its JSON
schema (never the reviewer's fallback for an unusable answer), and the
policy's decision on it must be one the service can carry out.
"""

from __future__ import annotations

import pytest

from farthing.agents.policy import SpendPolicy
from farthing.inference import InferenceSettings, chat_model
from farthing.jobs import LlmReviewer, ReviewSubject, decide
from tests.conftest import VllmProcess

pytestmark = pytest.mark.vllm

SETTINGS = InferenceSettings(max_tokens=600, request_timeout_s=180.0, retry_count_max=0)


def test_the_model_reviews_with_structured_output(vllm: VllmProcess) -> None:
    reviewer = LlmReviewer(chat_model(vllm.base_url, model=vllm.model, settings=SETTINGS))
    subject = ReviewSubject(
        1, "Translate to Hindi", "Translate the greeting.", "a complete translation", "text", "नमस्ते"
    )
    try:
        verdict = reviewer.review(subject)
    finally:
        reviewer.close()
    assert not any("no usable verdict" in reason for reason in verdict.reasons), verdict.reasons
    decision = decide(verdict, held=1_000_000, policy=SpendPolicy())
    assert decision.action in ("capture", "void")
    assert 0 <= decision.amount <= 1_000_000
