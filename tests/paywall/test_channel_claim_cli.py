"""``farthing paywall claim`` claims and settles what channels earned, as a real process, and bad input is one line.

A payer deposits and pays vouchers through our middleware (ASGI, real anvil,
a SQLite payment database). Then ``python -m farthing paywall claim --json``
runs against the same database with the receiver authorizer's key file: the
chain's ``totalClaimed`` equals what was charged, the merchant holds it, and
the ledger books it; a second run finds nothing to claim. A dead RPC, a
malformed or unknown ``--channel`` each give one ``error:`` line, a non-zero
exit and no traceback, and never print the key.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import PaymentStore
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.wallet.signer import LocalSigner
from tests.conftest import cli_env, free_port, run_farthing
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
from tests.paywall.test_channel_books import balances, channel_app
from tests.paywall.test_channel_paywall import _Channel, channel_store_fixture

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]  # the fixture, shared with test_channel_paywall


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def _one_line_error(result: Any, *needles: str) -> None:
    assert result.code != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(name="keys")
def keys_fixture(chain_env: ChainEnv, tmp_path: Path) -> Iterator[tuple[LocalSigner, Path, Path]]:
    authorizer = LocalSigner.generate()
    auth_file = _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    gas = chain_env.chain.dev_accounts()[7].private_key.get_secret_value()
    yield authorizer, auth_file, _private(tmp_path / "gas.key", gas)


def test_claim_settles_and_books_what_channels_earned(
    chain_env: ChainEnv,
    store: PaymentStore,
    channel_store: ChannelStore,
    keys: tuple[LocalSigner, Path, Path],
    tmp_path: Path,
) -> None:
    env, (authorizer, auth_file, gas_file) = chain_env, keys
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    database = LedgerDatabase(LedgerSettings(database_url=ledger_url))

    upgrade_database(database)
    books = LedgerRevenueBook(database)
    app = channel_app(env, store, channel_store, authorizer, books)
    p = PRICE_ATOMIC
    channels = [_Channel(env, authorizer) for _ in range(2)]
    merchant_before = env.token.balance_of(env.merchant)

    async def pay() -> None:
        async with asgi_client(app) as http:
            for k, ch in enumerate(channels):
                paid = await http.get("/api/data", headers=ch.header(ch.deposit(50 * p, p)))
                assert paid.status_code == 200, paid.text
                for n in range(2, 4 + k):
                    r = await http.get("/api/data", headers=ch.header(ch.voucher(n * p)))
                    assert r.status_code == 200, r.text

    asyncio.run(pay())
    earned = {ch.id: channel_store.get(ch.id).charged for ch in channels}  # type: ignore[union-attr]
    assert earned == {channels[0].id: 3 * p, channels[1].id: 4 * p}

    args = [
        "paywall", "claim", "--json", "--rpc-url", env.chain.rpc_url or "",
        "--authorizer-key-file", str(auth_file), "--key-file", str(gas_file),
        "--database-url", channel_store.display_url, "--ledger-database-url", ledger_url,
    ]  # fmt: skip
    result = run_farthing(args, env=cli_env(tmp_path / "data"))
    assert result.code == 0, result.stderr
    out = result.json()
    assert out["claimed"] == {"0x" + cid.hex(): str(v) for cid, v in earned.items()}
    assert out["settled"] == str(7 * p) and out["failures"] == []
    assert len(out["transactions"]) == 2 and out["booked"] == {"claims": 2, "settles": 1}
    escrow = ChannelEscrow(env.chain)
    for ch in channels:
        assert escrow.channel(ch.id)[1] == earned[ch.id]
    assert env.token.balance_of(env.merchant) - merchant_before == 7 * p
    for ch in channels:
        assert balances(books, env, "0x" + ch.id.hex())["receivable"] == 0
    assert balances(books, env, "0x" + channels[0].id.hex())["cash"] == 7 * p
    text = result.stdout + result.stderr
    assert authorizer.private_key.get_secret_value()[2:] not in text

    again = run_farthing(args, env=cli_env(tmp_path / "data"))
    assert again.code == 0, again.stderr
    assert again.json()["claimed"] == {} and again.json()["transactions"] == []
    database.dispose()


def test_claim_bad_input_is_one_line(
    chain_env: ChainEnv, keys: tuple[LocalSigner, Path, Path], tmp_path: Path
) -> None:
    _, auth_file, gas_file = keys
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    base = [
        "paywall",
        "claim",
        "--authorizer-key-file",
        str(auth_file),
        "--key-file",
        str(gas_file),
    ]
    dead = f"http://127.0.0.1:{free_port()}"
    env = cli_env(tmp_path / "data")
    result = run_farthing([*base, "--rpc-url", dead, "--rpc-timeout-s", "1", "--database-url", db],
                          env=env)  # fmt: skip
    _one_line_error(result, dead)
    live = chain_env.chain.rpc_url or ""
    result = run_farthing([*base, "--rpc-url", live, "--channel", "0x12"], env=env)
    _one_line_error(result, "--channel")
    unknown = "0x" + "ab" * 32
    result = run_farthing(
        [*base, "--rpc-url", live, "--database-url", db, "--channel", unknown], env=env
    )
    _one_line_error(result, unknown)
    for result_text in (result.stdout, result.stderr):
        assert gas_file.read_text()[2:] not in result_text
