"""A sign-in-with-x spent on one transport cannot be spent again on the other: one signed sign-in used over HTTP and then over MCP (and the other way round) opens the page once.

Held when tried from outside, kept as a test: the site's ``/mcp`` ``fetch``
and its HTTP edge share one sign-in nonce store (``OwnedArticles``), so a
sign-in header captured from either transport (a log, a proxy) is worth
nothing after its first use on either. Real parts: the module's anvil and
token, the site behind ``PaywallMiddleware`` with ``/mcp`` beside it and
``HostGuard`` in front on uvicorn (``tests/paywall/mcp/test_site_mcp.py``'s
fixture), a real payment over HTTP, sign-ins signed with the payer's key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.paywall.conftest import ChainEnv, chain_env, challenge_of, sign_for
from tests.paywall.mcp.conftest import call_tool, text_of
from tests.paywall.mcp.test_site_mcp import Site, site
from tests.paywall.test_serve_origin import signed_sign_in

__all__ = ["chain_env", "site"]

pytestmark = pytest.mark.anvil


def _fetch(site: Site, path: str, meta: dict[str, Any] | None = None) -> Any:
    return asyncio.run(call_tool(site.url, "fetch", {"path": path}, meta))


def _info(site: Site, path: str) -> dict[str, Any]:
    info: dict[str, Any] = _fetch(site, path).structuredContent["extensions"]["sign-in-with-x"][
        "info"
    ]
    return info


def test_a_sign_in_is_spent_once_across_transports(site: Site, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    path = "/articles/sign-in-replay"
    url = site.url + path
    with httpx.Client(timeout=30.0) as http:
        challenge = challenge_of(http.get(url, headers={"accept": "application/json"}))
        header = sign_for(challenge["accepts"][0], payer)
        assert http.get(url, headers={"PAYMENT-SIGNATURE": header}).status_code == 200
    # From here no cookie jar: the paid answer's receipt cookie would open the page itself.
    json_only = {"accept": "application/json"}

    # HTTP first, then the same sign-in over MCP.
    first = signed_sign_in(_info(site, path), payer, chain_env.chain.network)
    opened = httpx.get(url, headers={**json_only, "sign-in-with-x": first}, timeout=30.0)
    assert opened.status_code == 200 and "PAID-PART" in opened.text
    again = _fetch(site, path, {"sign-in-with-x": first})
    assert again.isError is True and "PAID-PART" not in text_of(again)

    # MCP first, then the same sign-in over HTTP.
    second = signed_sign_in(_info(site, path), payer, chain_env.chain.network)
    read = _fetch(site, path, {"sign-in-with-x": second})
    assert read.isError is False and "PAID-PART" in text_of(read)
    replayed = httpx.get(url, headers={**json_only, "sign-in-with-x": second}, timeout=30.0)
    assert replayed.status_code == 402 and "PAID-PART" not in replayed.text
