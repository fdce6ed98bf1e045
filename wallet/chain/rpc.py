"""The JSON-RPC backend: anvil, or Base and Base Sepolia, behind a URL.

An RPC that does not answer, times out, or answers a JSON-RPC error object
that is the node's fault rather than the call's raises
``ChainUnavailableError`` (its message names the URL, and the method and code
when there is one); a revert or a refused transaction stays the call's own
outcome.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Final, cast

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from farthing.invariant import invariant
from farthing.wallet.address import checksum
from farthing.wallet.chain.base import Backend, Chain
from farthing.wallet.chain.loopback import LoopbackPoster, is_loopback_http
from farthing.wallet.chain.values import Call, CallResult, DevAccount, anvil_dev_accounts
from farthing.wallet.errors import ChainUnavailableError, DeploymentError
from farthing.wallet.networks import ANVIL_CHAIN_ID
from farthing.wallet.revert import decode_revert_data, reason_for_revert

__all__ = ["RpcChain"]


class RpcChain(Chain):
    """A chain behind a JSON-RPC URL: anvil, or Base and Base Sepolia."""

    backend: ClassVar[Backend] = "rpc"

    def __init__(
        self, rpc_url: str, *, timeout_s: float = 5.0, receipt_timeout_s: float = 60.0
    ) -> None:
        invariant(timeout_s > 0 and receipt_timeout_s > 0, "timeouts must be positive")
        self.rpc_url = rpc_url
        self.timeout_s = timeout_s
        # No automatic retries: a dead endpoint fails within timeout_s.
        # web3 checks a transaction's chain id against eth_chainId before every
        # eth_call, estimate and send; a node's chain id never changes, so that
        # one answer is cached (it was most of the round trips of a deposit).
        provider = _NodeFaultProvider(
            rpc_url,
            request_kwargs={"timeout": timeout_s},
            exception_retry_configuration=None,
            cache_allowed_requests=True,
            cacheable_requests={cast(Any, "eth_chainId")},
        )
        self._poster: LoopbackPoster | None = None
        if is_loopback_http(rpc_url):
            # web3's one HTTP seam (HTTPProvider keeps its POSTer here); a test
            # checks it is taken, so a web3 that renames it fails loudly.
            self._poster = LoopbackPoster(rpc_url, timeout_s=timeout_s)
            provider._request_session_manager = cast(Any, self._poster)
        super().__init__(Web3(provider), receipt_timeout_s=receipt_timeout_s)
        if self.chain_id != ANVIL_CHAIN_ID:
            # Real networks make blocks every second or two and rate-limit callers.
            self.receipt_poll_s = 0.5

    def call_many(
        self, calls: Sequence[Call], *, block: int | str = "latest"
    ) -> tuple[CallResult, ...]:
        """The calls in one JSON-RPC batch: one round trip, and none of web3's per-call work.

        A node that refuses batches (it answers one error object, not a list
        of answers) gets the calls one at a time, as ``call`` sends them.
        """
        if len(calls) < 2:
            return super().call_many(calls, block=block)
        tag = block if isinstance(block, str) else hex(block)
        batch = [(cast(Any, "eth_call"), [_call_object(call), tag]) for call in calls]
        provider = cast(HTTPProvider, self.w3.provider)
        with self._rpc_errors():
            answers = provider.make_batch_request(batch)
        if not isinstance(answers, list) or len(answers) != len(calls):
            return super().call_many(calls, block=block)
        return tuple(self._call_result(answer) for answer in answers)

    def _call_result(self, answer: Any) -> CallResult:
        """One ``eth_call`` answer of a batch: its return data, a revert as a value, or an outage."""
        if not isinstance(answer, dict):
            raise ChainUnavailableError(f"the chain RPC at {self.rpc_url} answered a batch oddly")
        error = answer.get("error")
        if error is None:
            result = answer.get("result")
            if not isinstance(result, str) or not result.startswith("0x"):
                raise ChainUnavailableError(
                    f"the chain RPC at {self.rpc_url} answered eth_call without return data"
                )
            try:
                return CallResult(True, bytes.fromhex(result[2:]))
            except ValueError:
                raise ChainUnavailableError(
                    f"the chain RPC at {self.rpc_url} answered eth_call with bad hex"
                ) from None
        code, said = _error_parts(error)
        if _node_fault("eth_call", error):
            raise ChainUnavailableError(
                f"the chain RPC at {self.rpc_url} failed eth_call: error {code} {said}"
            )
        data = error.get("data")
        message: str | None = None
        if isinstance(data, str) and data.startswith("0x"):
            try:
                message = decode_revert_data(bytes.fromhex(data[2:]))
            except ValueError:
                message = None
        if message is None:
            message = said or None
        return CallResult(False, b"", reason_for_revert(message), message)

    def send_raw(self, raw: bytes) -> str:
        """``eth_sendRawTransaction`` without web3's request pipeline; refusals raise as web3's do."""
        with self._rpc_errors():
            answer = self.w3.provider.make_request(
                cast(Any, "eth_sendRawTransaction"), ["0x" + raw.hex()]
            )
        error = answer.get("error") if isinstance(answer, dict) else None
        if error is not None:
            code, message = _error_parts(error)
            data = error.get("data") if isinstance(error, dict) else None
            if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
                raise ContractLogicError(message, data=data)
            raise Web3RPCError(f"{{'code': {code}, 'message': {message!r}}}")
        tx_hash = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(tx_hash, str) or len(tx_hash) != 66:
            raise ChainUnavailableError(
                f"the chain RPC at {self.rpc_url} answered eth_sendRawTransaction without a hash"
            )
        return tx_hash.lower()

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """``eth_getTransactionReceipt`` read directly: the fields callers use, typed as web3 types them."""
        with self._rpc_errors():
            answer = self.w3.provider.make_request(
                cast(Any, "eth_getTransactionReceipt"), [tx_hash]
            )
        found = answer.get("result") if isinstance(answer, dict) else None
        if found is None:
            return None
        try:
            return _typed_receipt(found)
        except (KeyError, TypeError, ValueError):
            raise ChainUnavailableError(
                f"the chain RPC at {self.rpc_url} answered a receipt it could not have meant"
            ) from None

    def close(self) -> None:
        if self._poster is not None:
            self._poster.close()

    def dev_accounts(self) -> tuple[DevAccount, ...]:
        if self.chain_id != ANVIL_CHAIN_ID:
            return super().dev_accounts()
        return anvil_dev_accounts()

    @property
    def is_dev(self) -> bool:
        return self.chain_id == ANVIL_CHAIN_ID

    def set_code(self, address: str, code: bytes) -> None:
        if not self.is_dev:
            return super().set_code(address, code)
        with self._rpc_errors():
            response = self.w3.provider.make_request(
                cast(Any, "anvil_setCode"), [checksum(address), "0x" + code.hex()]
            )
        if "error" in response:
            raise DeploymentError(f"anvil_setCode at {address} failed: {response['error']}")

    def advance_time(self, seconds: int) -> int:
        if self.chain_id != ANVIL_CHAIN_ID:
            return super().advance_time(seconds)
        invariant(seconds > 0, "advance_time needs a positive number of seconds")
        with self._rpc_errors():
            self.w3.provider.make_request(cast(Any, "evm_increaseTime"), [seconds])
            self.w3.provider.make_request(cast(Any, "evm_mine"), [])
        return self.timestamp()

    @contextmanager
    def _rpc_errors(self) -> Iterator[None]:
        try:
            yield
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "an error"
            raise ChainUnavailableError(
                f"the chain RPC at {self.rpc_url} answered HTTP {status} (is it a JSON-RPC endpoint?)"
            ) from None
        except (requests.RequestException, OSError, TimeExhausted) as exc:
            kind = (
                "timed out"
                if isinstance(exc, (requests.Timeout, TimeExhausted))
                else "did not answer"
            )
            raise ChainUnavailableError(f"the chain RPC at {self.rpc_url} {kind}") from None


# Phrases of a node refusing a transaction for what it is (its nonce, fees or
# gas): the caller's business, left to web3's own error.
_TX_REFUSALS: Final = (
    "insufficient funds",
    "nonce too low",
    "nonce too high",
    "already known",
    "known transaction",
    "underpriced",
    "fee cap",
    "max fee per gas",
    "intrinsic gas",
    "gas limit",
    "gas required exceeds",
)
# Phrases of a call failing in the EVM (anvil says "EVM error OutOfGas"):
# the call's own outcome, like a revert.
_EXECUTION_FAILURES: Final = ("evm error", "out of gas", "outofgas", "invalid opcode")
# Dev-chain controls (anvil_*, evm_*) answer errors the test or tool asked for.
_DEV_METHOD_PREFIXES: Final = ("anvil_", "evm_", "hardhat_")


class _NodeFaultProvider(HTTPProvider):
    """An ``HTTPProvider`` that raises ``ChainUnavailableError`` when the node fails a request.

    A JSON-RPC error object is one of two things. A revert, or a node refusing
    a transaction for its nonce or fees, is the call's own outcome: web3
    raises ``ContractLogicError`` or ``Web3RPCError`` and callers turn it into
    a value. Anything else (``-32000 header not found``, ``-32603 internal
    error``, ``-32005`` rate limiting, a body that is not JSON-RPC) says
    nothing about the call, only that the node could not answer it, so it is
    an outage, raised as the same error as a refused connection. Left to web3,
    such an answer is a bare ``Web3RPCError`` that escapes every outage
    handler (a 500 in the paywall), or, with ``"data": null`` on ``eth_call``,
    is read as a revert.
    """

    def decode_rpc_response(self, raw_response: bytes) -> Any:  # type: ignore[override]
        try:
            return HTTPProvider.decode_rpc_response(raw_response)
        except ValueError:  # not JSON: a proxy's error page, a truncated body
            raise ChainUnavailableError(
                f"the chain RPC at {self.endpoint_uri} answered with something that is not JSON"
            ) from None

    def make_request(self, method: Any, params: Any) -> Any:
        # Transport failures are named here too, so code that calls web3
        # directly (the facilitator's sender) reports them as precisely.
        try:
            response = super().make_request(method, params)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "an error"
            raise ChainUnavailableError(
                f"the chain RPC at {self.endpoint_uri} answered HTTP {status} "
                "(is it a JSON-RPC endpoint?)"
            ) from None
        except requests.Timeout:
            raise ChainUnavailableError(
                f"the chain RPC at {self.endpoint_uri} timed out on {method}"
            ) from None
        except (requests.RequestException, OSError):
            raise ChainUnavailableError(
                f"the chain RPC at {self.endpoint_uri} did not answer"
            ) from None
        if not isinstance(response, dict):
            return response
        error = response.get("error")
        if error is not None and _node_fault(str(method), error):
            code, message = _error_parts(error)
            raise ChainUnavailableError(
                f"the chain RPC at {self.endpoint_uri} failed {method}: error {code} {message}"
            )
        return response


def _node_fault(method: str, error: Any) -> bool:
    """True when a JSON-RPC error says the node failed, not that the call was refused."""
    if method.startswith(_DEV_METHOD_PREFIXES):
        return False
    if not isinstance(error, dict):
        return True
    code, message = _error_parts(error)
    text = message.lower()
    data = error.get("data")
    if code == "3" or "revert" in text or (isinstance(data, str) and data.startswith("0x")):
        return False
    if any(phrase in text for phrase in _EXECUTION_FAILURES):
        return False
    refusal = any(phrase in text for phrase in _TX_REFUSALS)
    return not (
        refusal and method in ("eth_sendRawTransaction", "eth_sendTransaction", "eth_estimateGas")
    )


def _error_parts(error: Any) -> tuple[str, str]:
    if not isinstance(error, dict):
        return "?", " ".join(str(error).split())[:200]
    return str(error.get("code", "?")), " ".join(str(error.get("message", "")).split())[:200]


def _call_object(call: Call) -> dict[str, Any]:
    """An ``eth_call`` transaction object as JSON-RPC spells it."""
    found: dict[str, Any] = {"data": "0x" + bytes(call.data).hex()}
    if call.to is not None:
        found["to"] = checksum(call.to)
    if call.value:
        found["value"] = hex(call.value)
    return found


def _quantity(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("not a JSON-RPC quantity")
    return int(value, 16)


def _data(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("not JSON-RPC data")
    return bytes.fromhex(value[2:])


def _typed_receipt(found: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC receipt with its numbers as ints and its logs' topics and data as bytes."""
    created = found.get("contractAddress")
    return {
        "transactionHash": found["transactionHash"],
        "status": _quantity(found["status"]),
        "blockNumber": _quantity(found["blockNumber"]),
        "gasUsed": _quantity(found["gasUsed"]),
        "contractAddress": created,
        "logs": [
            {
                "address": log["address"],
                "topics": [_data(topic) for topic in log["topics"]],
                "data": _data(log["data"]),
                "logIndex": _quantity(log["logIndex"]),
                "blockNumber": _quantity(log["blockNumber"]),
                "transactionHash": log["transactionHash"],
            }
            for log in found["logs"]
        ],
    }
