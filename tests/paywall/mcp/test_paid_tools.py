"""A developer's FastMCP tools sold with ``PaidTools``: the 402 result, payment, settlement and every refusal.

All real: the module's anvil with our token, a SQLite payment database, a
migrated SQLite ledger for the revenue books, a FastMCP server over
streamable HTTP on uvicorn (127.0.0.1), ``mcp``'s ``ClientSession``. Paying
moves exactly the price on chain and books it once; a failing tool is never
charged; a replayed, redirected, underpaid or oversized payment is refused
with a result, never a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import Session

from farthing.errors import FarthingError
from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import LedgerRevenueBook, PaymentState, PaymentStore
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, mcp_session, paid_tools, payment_for, text_of

pytestmark = pytest.mark.anvil

tools_payers: dict[str, LocalSigner] = {}  # who pays spend_first, by its city argument


@dataclass
class ToolServer:
    url: str
    store: PaymentStore
    ledger: LedgerDatabase
    calls: list[str]


@pytest.fixture(scope="module")
def tools(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolServer]:
    folder = tmp_path_factory.mktemp("paid-tools")
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    ledger = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{folder / 'ledger.sqlite'}"))
    upgrade_database(ledger)
    calls: list[str] = []
    tools_payers.clear()
    server, paid = paid_tools("weather", chain_env, store, books=LedgerRevenueBook(ledger))

    @paid.tool(PRICE_ATOMIC, description="The forecast for a city.")
    async def forecast(city: str) -> str:
        calls.append(city)
        return f"sunny in {city}"

    @paid.tool(lambda args: PRICE_ATOMIC * len(args["cities"]))
    def forecasts(cities: list[str]) -> dict[str, Any]:
        return {"cities": cities, "weather": "sunny"}

    @paid.tool("0.01 USDC")
    async def broken(city: str) -> str:
        calls.append("broken")
        raise RuntimeError("the weather service is down")

    @paid.tool(PRICE_ATOMIC)
    def spend_first(city: str) -> str:
        # The payer empties its wallet while the tool runs: settling must fail.
        payer = tools_payers[city]
        balance = chain_env.token.balance_of(payer.address)
        assert chain_env.token.transfer(chain_env.owner.address, balance, sender=payer).ok
        return f"secret for {city}"

    @server.tool()
    async def free_hint() -> str:
        return "free"

    with serve_in_thread(server.streamable_http_app()) as url:
        yield ToolServer(url, store, ledger, calls)
    store.dispose()
    ledger.dispose()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _call(tools: ToolServer, name: str, args: dict[str, Any], meta: Any = None) -> Any:
    return asyncio.run(call_tool(tools.url, name, args, meta))


def test_an_unpaid_call_gets_the_402_result(tools: ToolServer, chain_env: ChainEnv) -> None:
    result = _call(tools, "forecast", {"city": "Oslo"})
    assert result.isError is True
    challenge = result.structuredContent
    assert challenge["x402Version"] == 2 and challenge["error"] == "payment_required"
    assert challenge["resource"]["url"] == "mcp://tool/forecast"
    (offer,) = challenge["accepts"]
    assert offer["scheme"] == "exact" and offer["amount"] == str(PRICE_ATOMIC)
    assert offer["payTo"] == chain_env.merchant and offer["asset"] == chain_env.asset.address
    # content[0].text is the same PaymentRequired as JSON, as the binding says.
    import json

    assert json.loads(result.content[0].text) == challenge
    assert "Oslo" not in tools.calls and _call(tools, "free_hint", {}).isError is False


def test_a_paid_call_runs_the_tool_settles_and_books_once(
    tools: ToolServer, chain_env: ChainEnv
) -> None:
    payer = chain_env.new_payer()
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    challenge = _call(tools, "forecast", {"city": "Bergen"}).structuredContent
    meta = payment_for(challenge, payer)
    result = _call(tools, "forecast", {"city": "Bergen"}, meta)
    assert result.isError is False, text_of(result)
    assert text_of(result) == "sunny in Bergen"
    settled = result.meta["x402/payment-response"]
    assert settled["success"] is True and settled["payer"] == payer.address
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    assert tools.calls.count("Bergen") == 1
    # The same payment again: refused, the tool not run, nothing moved.
    again = _call(tools, "forecast", {"city": "Bergen"}, meta)
    assert again.isError is True and again.structuredContent["error"] == "nonce_already_used"
    assert tools.calls.count("Bergen") == 1
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    with Session(tools.ledger.engine) as session:
        rows = revenue_report(session=session, payee_address=chain_env.merchant)
    (row,) = [r for r in rows if r.resource == "mcp://tool/forecast"]
    assert (row.posted, row.payment_count) == (PRICE_ATOMIC, 1)


def test_a_computed_price_is_charged_per_argument(tools: ToolServer, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    args = {"cities": ["Oslo", "Bergen", "Tromso"]}
    challenge = _call(tools, "forecasts", args).structuredContent
    assert challenge["accepts"][0]["amount"] == str(3 * PRICE_ATOMIC)
    result = _call(tools, "forecasts", args, payment_for(challenge, payer))
    assert result.isError is False, text_of(result)
    assert result.structuredContent == {"cities": args["cities"], "weather": "sunny"}
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - 3 * PRICE_ATOMIC


def test_a_failing_tool_is_not_charged(tools: ToolServer, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    challenge = _call(tools, "broken", {"city": "Oslo"}).structuredContent
    result = _call(tools, "broken", {"city": "Oslo"}, payment_for(challenge, payer))
    assert result.isError is True and "weather service is down" in text_of(result)
    assert result.meta is None or "x402/payment-response" not in result.meta
    assert chain_env.token.balance_of(payer.address) == 50_000_000
    released = [r for r in tools.store.records() if r.key.payer.lower() == payer.address.lower()]
    assert [r.state for r in released] == [PaymentState.RELEASED]


@pytest.mark.parametrize(
    ("bend", "reason"),
    [
        ({"to": "0x" + "77" * 20}, "recipient_mismatch"),
        ({"value": PRICE_ATOMIC - 1}, "amount_mismatch"),
    ],
)
def test_a_payment_for_other_terms_is_refused(
    tools: ToolServer, chain_env: ChainEnv, bend: dict[str, Any], reason: str
) -> None:
    payer = chain_env.new_payer()
    challenge = _call(tools, "forecast", {"city": "Oslo"}).structuredContent
    result = _call(tools, "forecast", {"city": "Lima"}, payment_for(challenge, payer, **bend))
    assert result.isError is True and result.structuredContent["accepts"]
    assert result.structuredContent["error"], result.structuredContent
    assert "Lima" not in tools.calls
    assert chain_env.token.balance_of(payer.address) == 50_000_000


def test_a_payment_in_another_asset_is_refused(tools: ToolServer, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    challenge = _call(tools, "forecast", {"city": "Oslo"}).structuredContent
    meta = payment_for(challenge, payer)
    meta["x402/payment"]["accepted"]["asset"] = "0x" + "55" * 20
    result = _call(tools, "forecast", {"city": "Quito"}, meta)
    assert result.isError is True and result.structuredContent["accepts"]
    assert "Quito" not in tools.calls


def test_nulls_in_the_payment_are_accepted(tools: ToolServer, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    challenge = _call(tools, "forecast", {"city": "Oslo"}).structuredContent
    meta = payment_for(challenge, payer)
    meta["x402/payment"]["extensions"] = None
    meta["x402/payment"]["resource"] = {**challenge["resource"], "serviceName": None}
    result = _call(tools, "forecast", {"city": "Nuuk"}, meta)
    assert result.isError is False, text_of(result)
    assert result.meta["x402/payment-response"]["success"] is True


@pytest.mark.parametrize(
    "payment",
    [
        "not an object",
        {"x402Version": 2, "payload": _nested(40)},
        {"x402Version": 2, "payload": {"blob": "x" * 20_000}},
        {"x402Version": 2, "accepted": [0] * 1000},
        {"x402Version": 2, "payload": {"authorization": {"value": 1.5}}},
    ],
    ids=["string", "deep", "large", "many-items", "float"],
)
def test_a_malformed_payment_gets_a_clean_402_result(tools: ToolServer, payment: Any) -> None:
    result = _call(tools, "forecast", {"city": "Oslo"}, {"x402/payment": payment})
    assert result.isError is True
    assert result.structuredContent["accepts"] and result.structuredContent["error"] not in (
        None,
        "payment_required",
    )
    assert tools.calls.count("Oslo") == 0


def test_a_failed_settlement_withholds_the_output(tools: ToolServer, chain_env: ChainEnv) -> None:
    # A dev account pays: it has the gas to empty its own wallet mid-call.
    payer = chain_env.chain.dev_accounts()[7].signer()
    assert chain_env.token.mint(payer.address, PRICE_ATOMIC, sender=chain_env.owner).ok
    tools_payers["Rome"] = payer
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    challenge = _call(tools, "spend_first", {"city": "Rome"}).structuredContent
    result = _call(tools, "spend_first", {"city": "Rome"}, payment_for(challenge, payer))
    assert result.isError is True and "secret for Rome" not in text_of(result), text_of(result)
    assert result.structuredContent["accepts"] and result.structuredContent["error"]
    assert result.meta["x402/payment-response"]["success"] is False
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before


def test_the_tool_schema_is_the_functions_and_mistakes_fail_at_registration(
    tools: ToolServer, chain_env: ChainEnv
) -> None:
    async def listed() -> Any:
        async with mcp_session(tools.url) as session:
            return {t.name: t.inputSchema for t in (await session.list_tools()).tools}

    schemas = asyncio.run(listed())
    assert set(schemas["forecast"]["properties"]) == {"city"}
    assert schemas["forecast"]["required"] == ["city"]
    server, paid = paid_tools("mistakes", chain_env, tools.store)

    def tool() -> str:
        return "x"

    for price, options in [
        ("0.0000001 USDC", {}),
        ("1 USDC", {"schemes": ("batch-settlement",)}),
        ("1 USDC", {"name": ".."}),
        ("1 USDC", {"name": "a/b"}),
    ]:
        with pytest.raises(FarthingError):
            paid.tool(price, **options)(tool)
    assert asyncio.run(server.list_tools()) == []


def test_one_payment_sent_many_times_at_once_runs_the_tool_once(
    tools: ToolServer, chain_env: ChainEnv
) -> None:
    payer = chain_env.new_payer()
    challenge = _call(tools, "forecast", {"city": "Lagos"}).structuredContent
    meta = payment_for(challenge, payer)

    async def together() -> list[Any]:
        calls = [call_tool(tools.url, "forecast", {"city": "Lagos"}, meta) for _ in range(6)]
        return list(await asyncio.gather(*calls))

    results = asyncio.run(together())
    assert sum(1 for r in results if not r.isError) == 1
    assert tools.calls.count("Lagos") == 1
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
