"""The chain interface behaves the same on both backends, and fails clearly when it must.

Reverts are values normalised across backends (including a transaction mined
with status 0, reached by skipping the simulation), hashes are 0x-prefixed,
the revert-string table agrees with the official x402 facilitator's mapping,
and an RPC that refuses or never answers raises one ``ChainUnavailableError``
naming the URL within the timeout.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from x402.mechanisms.evm import constants as x402_codes
from x402.mechanisms.evm.exact.eip3009_utils import parse_eip3009_transfer_error

from farthing.devchain.node import start_anvil
from farthing.wallet.chain import (
    ANVIL_DEV_MNEMONIC,
    Call,
    Chain,
    MemoryChain,
    TxResult,
    anvil_dev_accounts,
    open_chain,
)
from farthing.wallet.eip712 import domain_separator
from farthing.wallet.eip3009 import sign_authorization
from farthing.wallet.errors import ChainError, ChainUnavailableError
from farthing.wallet.networks import ANVIL_CHAIN_ID
from farthing.wallet.revert import reason_for_revert
from farthing.wallet.token import Stablecoin, deploy_stablecoin

# ---------------------------------------------------------------- revert reasons

FIAT_TOKEN_REVERTS = {
    "FiatTokenV2: authorization is expired": (
        "authorization_expired",
        x402_codes.ERR_VALID_BEFORE_EXPIRED,
    ),
    "FiatTokenV2: authorization is not yet valid": (
        "authorization_not_yet_valid",
        x402_codes.ERR_VALID_AFTER_FUTURE,
    ),
    "FiatTokenV2: authorization is used or canceled": (
        "authorization_used_or_canceled",
        x402_codes.ERR_NONCE_ALREADY_USED,
    ),
    "FiatTokenV2: invalid signature": ("invalid_signature", x402_codes.ERR_INVALID_SIGNATURE),
    "ECRecover: invalid signature 's' value": (
        "invalid_signature",
        x402_codes.ERR_INVALID_SIGNATURE,
    ),
    "ECRecover: invalid signature 'v' value": (
        "invalid_signature",
        x402_codes.ERR_INVALID_SIGNATURE,
    ),
    "ERC20: transfer amount exceeds balance": (
        "insufficient_balance",
        x402_codes.ERR_INSUFFICIENT_BALANCE,
    ),
}


@pytest.mark.parametrize("message", sorted(FIAT_TOKEN_REVERTS))
def test_revert_reasons_agree_with_the_x402_facilitator(message: str) -> None:
    ours, theirs = FIAT_TOKEN_REVERTS[message]
    assert reason_for_revert(message) == ours
    assert reason_for_revert(f"execution reverted: {message}") == ours
    assert parse_eip3009_transfer_error(Exception(f"execution reverted: {message}")) == theirs


def test_unknown_and_empty_reverts() -> None:
    assert reason_for_revert(None) == "reverted"
    assert reason_for_revert("execution reverted") == "reverted"
    assert reason_for_revert("some other contract's message") == "reverted"
    assert reason_for_revert("FiatTokenV2: caller must be the payee") == "caller_must_be_payee"
    assert reason_for_revert("Out of gas: Needed 2600 - Remaining 1775") == "out_of_gas"
    assert reason_for_revert("EVM error OutOfGas") == "out_of_gas"


# ---------------------------------------------------------------- both backends


def test_identity(chain: Chain) -> None:
    assert chain.network == f"eip155:{chain.chain_id}"
    assert chain.block_number() >= 0
    # Anvil follows the wall clock; the memory chain only runs ahead of it.
    assert chain.timestamp() >= time.time() - 5
    if chain.backend == "rpc":
        assert chain.timestamp() < time.time() + 120
    if chain.backend == "memory":
        assert chain.chain_id != ANVIL_CHAIN_ID and chain.rpc_url is None
    else:
        assert chain.chain_id == ANVIL_CHAIN_ID and chain.rpc_url is not None


@pytest.mark.parametrize("backend", ["memory", pytest.param("anvil", marks=pytest.mark.anvil)])
def test_advance_time_moves_a_private_dev_chain(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """On chains of its own: a shared chain's clock must stay with the wall clock (x402 reads it)."""
    with contextlib.ExitStack() as stack:
        if backend == "memory":
            chain: Chain = MemoryChain(accounts=1)
        else:
            request.getfixturevalue("anvil")  # skips when the binary is missing
            chain = stack.enter_context(start_anvil()).chain()
        before = chain.timestamp()
        assert chain.advance_time(500) >= before + 500


def test_dev_accounts_are_anvils_on_both_backends(chain: Chain) -> None:
    accounts = chain.dev_accounts()
    assert [a.address for a in accounts] == [a.address for a in anvil_dev_accounts(len(accounts))]
    assert accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert chain.native_balance(accounts[0].address) > 10**18
    assert "junk" in ANVIL_DEV_MNEMONIC
    assert "private_key=SecretStr('**********')" in repr(accounts[0])


def test_a_transaction_mined_with_status_zero_is_a_value(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skip the simulation so the revert happens on chain, as after a race with another sender."""
    signed = sign_authorization(env.payer, env.authorization(), env.domain)
    assert env.token.transfer_with_authorization(signed, sender=env.relayer).ok
    replay = env.token.transfer_with_authorization_call(signed)
    monkeypatch.setattr(env.chain, "_simulate", lambda tx, gas_limit: (None, 200_000))

    result = env.chain.send(replay, sender=env.relayer)

    assert isinstance(result, TxResult)
    assert result.sent and not result.ok and result.block_number is not None
    assert result.reason == "authorization_used_or_canceled"
    assert result.revert_message == "FiatTokenV2: authorization is used or canceled"
    receipt = env.chain.w3.eth.get_transaction_receipt(result.tx_hash)
    assert receipt["status"] == 0


def test_running_out_of_gas_is_a_value(env: Any) -> None:
    signed = sign_authorization(env.payer, env.authorization(), env.domain)
    call = env.token.transfer_with_authorization_call(signed, form="bytes")
    result = env.chain.send(call, sender=env.relayer, gas_limit=30_000)
    # Memory simulates with the capped gas and refuses before sending; anvil
    # estimates without the cap, sends, and the receipt has status 0.
    assert not result.ok and result.reason == "out_of_gas"
    assert result.sent == (env.chain.backend == "rpc")
    assert not env.token.authorization_state(env.payer.address, signed.authorization.nonce)


def test_a_sender_without_gas_money_is_refused(env: Any) -> None:
    from farthing.wallet.signer import LocalSigner

    broke = LocalSigner.generate()
    result = env.token.transfer(env.payee.address, 0, sender=broke)
    assert not result.ok and not result.sent
    assert result.reason == "insufficient_funds_for_gas"


def test_read_only_call_reports_a_revert_as_a_value(env: Any) -> None:
    garbage = env.chain.call(Call(env.asset.address, bytes.fromhex("deadbeef")))
    assert not garbage.ok and garbage.reason == "reverted"
    # A facilitator's verify: simulate the settlement as its relayer would send it.
    signed = sign_authorization(env.payer, env.authorization(env.payer_funds + 1), env.domain)
    simulated = env.chain.call(
        env.token.transfer_with_authorization_call(signed), sender=env.relayer.address
    )
    assert (simulated.ok, simulated.reason) == (False, "insufficient_balance")


# ---------------------------------------------------------------- opening chains


def test_memory_chains_are_independent() -> None:
    first, second = MemoryChain(), MemoryChain()
    assert first.chain_id == second.chain_id
    assert first.w3 is not second.w3


def test_open_chain_refuses_what_is_not_a_chain() -> None:
    with pytest.raises(ChainError, match="not a chain"):
        open_chain("mainnet")


def test_an_unreachable_rpc_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        with pytest.raises(ChainUnavailableError) as caught:
            open_chain(url)
    assert str(caught.value) == f"the chain RPC at {url} did not answer"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A local server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_silent_rpc_times_out_within_the_bound(silent_server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ChainUnavailableError, match=f"the chain RPC at {silent_server} timed out"):
        open_chain(silent_server, timeout_s=0.5)
    assert time.monotonic() - started < 3


@pytest.mark.anvil
def test_the_domain_separator_follows_a_chain_id_change(request: pytest.FixtureRequest) -> None:
    """A fork that changes the chain id must not accept signatures made for the old id."""
    request.getfixturevalue("anvil")  # skips when the binary is missing
    with start_anvil() as node:
        chain = node.chain()
        owner = chain.dev_accounts()[0].signer()
        asset = deploy_stablecoin(chain, sender=owner)
        token = Stablecoin(chain, asset)
        assert token.domain_separator() == domain_separator("USD Coin", "2", 31337, asset.address)
        chain.w3.provider.make_request("anvil_setChainId", [4242])  # type: ignore[arg-type]
        assert token.domain_separator() == domain_separator("USD Coin", "2", 4242, asset.address)


def test_a_web_server_that_is_not_an_rpc_says_so() -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ChainUnavailableError) as caught:
            open_chain(url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert (
        str(caught.value)
        == f"the chain RPC at {url} answered HTTP 404 (is it a JSON-RPC endpoint?)"
    )
