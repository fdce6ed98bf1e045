"""The chain client's lean paths answer exactly what its web3 paths answer, on both backends.

``call_many`` (one JSON-RPC batch on anvil) gives each call's result as
``call`` would, a revert in the middle included; ``Stablecoin.payer_state``
is ``authorizationState`` and ``balanceOf`` read together; ``send_raw`` and
``receipt``/``wait_receipt`` hand a signed transaction to the node and read
its receipt typed as web3 types it. A node that refuses batches gets the
calls one at a time, and a node that answers nonsense is an outage.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from farthing.wallet.chain import Call, Chain, RpcChain
from farthing.wallet.chain.values import TRANSFER_TOPIC
from farthing.wallet.eip3009 import sign_authorization
from farthing.wallet.errors import ChainUnavailableError


def _reads(env: Any) -> list[Call]:
    """A balance, a revert (a selector the token lacks), the payer's nonce state, a name."""
    nonce = bytes(32)
    return [
        Call(
            env.asset.address,
            _selector_with("balanceOf(address)", ["address"], [env.payer.address]),
        ),
        Call(env.asset.address, bytes.fromhex("deadbeef")),
        Call(
            env.asset.address,
            _selector_with(
                "authorizationState(address,bytes32)",
                ["address", "bytes32"],
                [env.payer.address, nonce],
            ),
        ),
        Call(env.asset.address, bytes.fromhex("06fdde03")),  # name()
    ]


def _selector_with(signature: str, types: list[str], args: list[Any]) -> bytes:
    return keccak(text=signature)[:4] + encode(types, args)


def test_call_many_answers_as_call_does_in_order(env: Any) -> None:
    calls = _reads(env)
    together = env.chain.call_many(calls)
    alone = [env.chain.call(call) for call in calls]
    assert [(r.ok, r.return_data, r.reason) for r in together] == [
        (r.ok, r.return_data, r.reason) for r in alone
    ]
    assert [r.ok for r in together] == [True, False, True, True]
    assert env.chain.call_many([]) == ()


def test_payer_state_reads_the_nonce_and_the_balance(env: Any) -> None:
    signed = sign_authorization(env.payer, env.authorization(1_000), env.domain)
    nonce = signed.authorization.nonce
    assert env.token.payer_state(env.payer.address, nonce) == (False, env.payer_funds)
    assert env.token.transfer_with_authorization(signed, sender=env.relayer).ok
    assert env.token.payer_state(env.payer.address, nonce) == (True, env.payer_funds - 1_000)
    assert env.token.payer_state(env.payer.address, nonce) == (
        env.token.authorization_state(env.payer.address, nonce),
        env.token.balance_of(env.payer.address),
    )


def test_send_raw_and_the_receipt_typed_as_web3_types_it(env: Any) -> None:
    chain: Chain = env.chain
    signed = sign_authorization(env.payer, env.authorization(2_000), env.domain)
    call = env.token.transfer_with_authorization_call(signed)
    tx = {
        "from": env.relayer.address,
        "to": call.to,
        "data": "0x" + call.data.hex(),
        "value": 0,
        "gas": 200_000,
        "nonce": chain.w3.eth.get_transaction_count(env.relayer.address, "pending"),
        "chainId": chain.chain_id,
        "maxFeePerGas": 2 * 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    tx_hash = chain.send_raw(env.relayer.sign_transaction(tx))
    assert tx_hash.startswith("0x") and len(tx_hash) == 66
    receipt = chain.wait_receipt(tx_hash, timeout_s=10, poll_s=0.01)
    assert receipt is not None and chain.receipt(tx_hash) is not None
    web3_receipt = chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    assert int(receipt["status"]) == 1 == int(web3_receipt["status"])
    assert int(receipt["blockNumber"]) == int(web3_receipt["blockNumber"])
    assert int(receipt["gasUsed"]) == int(web3_receipt["gasUsed"])
    ours = [(bytes(t) for t in log["topics"]) for log in receipt["logs"]]
    assert [list(t) for t in ours] == [
        [bytes(t) for t in log["topics"]] for log in web3_receipt["logs"]
    ]
    assert [bytes(log["data"]) for log in receipt["logs"]] == [
        bytes(log["data"]) for log in web3_receipt["logs"]
    ]
    assert any(bytes(log["topics"][0]) == TRANSFER_TOPIC for log in receipt["logs"])
    assert chain.receipt("0x" + "ab" * 32) is None
    assert chain.wait_receipt("0x" + "ab" * 32, timeout_s=0.05, poll_s=0.01) is None


@pytest.mark.anvil
def test_a_refused_raw_transaction_raises_as_web3_would(anvil_env: Any) -> None:
    from web3.exceptions import Web3RPCError

    env = anvil_env
    tx = {
        "from": env.relayer.address,
        "to": env.payee.address,
        "value": 0,
        "gas": 21_000,
        "nonce": 0,  # long used: "nonce too low"
        "chainId": env.chain.chain_id,
        "maxFeePerGas": 2 * 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    env.chain.send(Call(env.payee.address, b""), sender=env.relayer)  # use nonce 0 if unused
    with pytest.raises(Web3RPCError, match="nonce too low"):
        env.chain.send_raw(env.relayer.sign_transaction(tx))


# ---------------------------------------------------------------- odd nodes


class FakeOddRpc:
    """Relays JSON-RPC to anvil; refuses batches (``no_batch``) or answers a batch with junk."""

    def __init__(self, upstream: str, mode: str) -> None:
        relay = self
        self.batches = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if isinstance(json.loads(body), list):
                    relay.batches += 1
                    if mode == "no_batch":
                        answer = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
                                  "message": "batch requests are not supported"}}  # fmt: skip
                    else:
                        answer = [
                            {"jsonrpc": "2.0", "id": one["id"], "result": "not hex"}
                            for one in json.loads(body)
                        ]
                    data = json.dumps(answer).encode()
                else:
                    request = urllib.request.Request(
                        upstream, body, {"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(request, timeout=10) as found:
                        data = found.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def anvil_env(anvil_chain: Chain, make_env: Any) -> Any:
    return make_env(anvil_chain)


@pytest.fixture(params=["no_batch", "junk"])
def odd(request: pytest.FixtureRequest, anvil_env: Any) -> Iterator[tuple[FakeOddRpc, str]]:
    relay = FakeOddRpc(anvil_env.chain.rpc_url, request.param)
    yield relay, request.param
    relay.close()


@pytest.mark.anvil
def test_a_node_without_batches_gets_the_calls_one_by_one_and_junk_is_an_outage(
    anvil_env: Any, odd: tuple[FakeOddRpc, str]
) -> None:
    relay, mode = odd
    chain = RpcChain(relay.url)
    calls = _reads(anvil_env)
    if mode == "no_batch":
        assert [r.ok for r in chain.call_many(calls)] == [True, False, True, True]
    else:
        with pytest.raises(ChainUnavailableError, match="answered"):
            chain.call_many(calls)
    assert relay.batches == 1
    chain.close()
