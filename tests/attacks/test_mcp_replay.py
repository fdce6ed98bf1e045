"""One payment is spent once whichever transport carries it: a ``PAYMENT-SIGNATURE`` settled over HTTP and then replayed in ``_meta["x402/payment"]`` over MCP (and the other way round, and for another page at the same price) delivers nothing the second time and is charged once.

Held when tried from outside, kept as a test: the site's ``/mcp`` ``fetch``
runs through the same ``PaywallMiddleware`` and payment store as its HTTP
edge, so the authorization's nonce claimed by one transport is
``nonce_already_used`` on the other. Real parts: the module's anvil and
token, the site behind ``PaywallMiddleware`` with ``/mcp`` beside it and
``HostGuard`` in front on uvicorn (``tests/paywall/mcp/test_site_mcp.py``'s
fixture), payments signed with the payer's key, balances read on chain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from farthing.paywall.wire import unb64_json
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, chain_env, challenge_of, sign_for
from tests.paywall.mcp.conftest import call_tool, text_of
from tests.paywall.mcp.test_site_mcp import Site, site

__all__ = ["chain_env", "site"]

pytestmark = pytest.mark.anvil

JSON_ONLY = {"accept": "application/json"}


def _fetch(site: Site, path: str, meta: dict[str, Any] | None = None) -> Any:
    return asyncio.run(call_tool(site.url, "fetch", {"path": path}, meta))


def _as_meta(header: str, challenge: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = unb64_json(header)
    payload["resource"] = challenge["resource"]
    return {"x402/payment": payload}


def test_a_payment_spent_over_http_is_refused_over_mcp(site: Site, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    before = chain_env.token.balance_of(payer.address)
    url = f"{site.url}/articles/replay-http"
    challenge = challenge_of(httpx.get(url, headers=JSON_ONLY, timeout=30.0))
    header = sign_for(challenge["accepts"][0], payer)
    paid = httpx.get(url, headers={**JSON_ONLY, "PAYMENT-SIGNATURE": header}, timeout=30.0)
    assert paid.status_code == 200
    for path in ("/articles/replay-http", "/articles/replay-other"):
        replayed = _fetch(site, path, _as_meta(header, challenge))
        assert replayed.isError is True and "PAID-PART" not in text_of(replayed)
        assert replayed.structuredContent["error"] == "nonce_already_used"
    assert chain_env.token.balance_of(payer.address) == before - PRICE_ATOMIC


def test_a_payment_spent_over_mcp_is_refused_over_http(site: Site, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    before = chain_env.token.balance_of(payer.address)
    path = "/articles/replay-mcp"
    challenge = _fetch(site, path).structuredContent
    header = sign_for(challenge["accepts"][0], payer)
    paid = _fetch(site, path, _as_meta(header, challenge))
    assert paid.isError is False, text_of(paid)
    for again in (path, "/articles/replay-mcp-other"):
        replayed = httpx.get(
            site.url + again, headers={**JSON_ONLY, "PAYMENT-SIGNATURE": header}, timeout=30.0
        )
        assert replayed.status_code == 402 and "PAID-PART" not in replayed.text
    assert chain_env.token.balance_of(payer.address) == before - PRICE_ATOMIC
