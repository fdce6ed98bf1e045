"""``RemoteFacilitator`` reads a facilitator's answer only after bounding it: a hostile one is an outage, never a crash.

A fake third-party facilitator (a small Starlette app over
``httpx.ASGITransport``: a seam we do not own) answers ``/supported``,
``/verify`` and ``/settle`` with JSON nested 100,000 deep, or over a mebibyte:
each call raises ``FacilitatorUnavailableError`` (a 503 at the paywall), not
``RecursionError``.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.facilitator.remote import RemoteFacilitator
from farthing.paywall.wire import PaymentPayload, PaymentRequirements
from farthing.wallet.eip3009 import build_authorization
from farthing.wallet.signer import LocalSigner


def _hostile(body: bytes) -> Starlette:
    async def answer(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(
        routes=[
            Route("/supported", answer),
            Route("/verify", answer, methods=["POST"]),
            Route("/settle", answer, methods=["POST"]),
        ]
    )


def _payment() -> tuple[PaymentPayload, PaymentRequirements]:
    payer = LocalSigner.generate()
    requirements = PaymentRequirements(
        network="eip155:31337",
        asset="0x" + "11" * 20,
        amount=1,
        pay_to="0x" + "22" * 20,
        max_timeout_seconds=60,
        token_name="USDC",
        token_version="2",
    )
    auth = build_authorization(from_address=payer.address, to=requirements.pay_to, value=1)
    return PaymentPayload(accepted=requirements, authorization=auth, signature=b"\x00" * 65), (
        requirements
    )


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"pad":"' + b"a" * (2 * 1024 * 1024) + b'"}'],
    ids=["deep", "huge"],
)
def test_a_hostile_answer_is_an_outage(body: bytes) -> None:
    remote = RemoteFacilitator(
        "http://facilitator.test", transport=httpx.ASGITransport(app=_hostile(body))
    )
    payload, requirements = _payment()

    async def go() -> list[BaseException | object]:
        results: list[BaseException | object] = []
        for call in (
            remote.supported(),
            remote.verify(payload, requirements),
            remote.settle(payload, requirements),
        ):
            try:
                results.append(await call)
            except BaseException as exc:  # noqa: BLE001 - which exception is the point
                results.append(exc)
        await remote.aclose()
        return results

    for result in asyncio.run(go()):
        assert isinstance(result, FacilitatorUnavailableError), repr(result)[:300]
