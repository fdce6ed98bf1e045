"""One chain interface over two backends: in-process py-evm and any JSON-RPC URL.

``open_chain("memory")`` runs py-evm inside this process (web3's
EthereumTesterProvider): no node, about 80 transactions a second, and a chain
id that is *not* 31337, so callers always read ``chain.chain_id``.
``open_chain("http://127.0.0.1:8545")`` talks to anvil or a real network.

Transactions are signed locally by a ``TxSigner`` and their outcome is a value,
:class:`TxResult`, never an exception: a revert has ``ok=False``, a snake_case
``reason`` (``authorization_expired``, ``insufficient_balance``, …) and the raw
``revert_message``. The two backends report reverts differently (eth-tester
raises ``TransactionFailed``, HTTP raises ``ContractLogicError``, and a
transaction sent with explicit gas is mined with status 0 and raises nothing);
this module hides the difference. Exceptions are left for what a caller cannot
treat as a result: an RPC that does not answer, times out, or answers a
JSON-RPC error object that is the node's fault rather than the call's
(``ChainUnavailableError``, whose message names the URL, and the method and
code when there is one), or a programmer error.

The memory chain mines one block per transaction and each block's timestamp is
at least its parent's plus one second, so under load its clock runs ahead of
the wall clock. Read the chain's time with :meth:`Chain.timestamp`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError as EthValidationError
from pydantic import SecretStr
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from farthing.invariant import invariant
from farthing.wallet.address import checksum
from farthing.wallet.errors import ChainError, ChainUnavailableError
from farthing.wallet.networks import ANVIL_CHAIN_ID, caip2
from farthing.wallet.revert import reason_for_revert, revert_message
from farthing.wallet.signer import LocalSigner, TxSigner

__all__ = [
    "ANVIL_DEV_MNEMONIC",
    "TRANSFER_TOPIC",
    "Backend",
    "Call",
    "CallResult",
    "Chain",
    "DevAccount",
    "LogEntry",
    "MemoryChain",
    "RpcChain",
    "TransferEvent",
    "TxResult",
    "address_topic",
    "anvil_dev_accounts",
    "open_chain",
]

Backend = Literal["memory", "rpc"]

# The well-known public mnemonic of anvil's (and hardhat's) dev accounts. The
# memory chain funds the same accounts, so both backends share addresses.
ANVIL_DEV_MNEMONIC = "test test test test test test test test test test test junk"
_DEV_HD_PATH = "m/44'/60'/0'/0"

TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")


def _hex(value: bytes | str) -> str:
    """0x-prefixed lowercase hex (``HexBytes.hex()`` has no prefix in web3 v8)."""
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Call:
    """What to run on-chain: a target (``None`` creates a contract), calldata, value in wei."""

    to: str | None
    data: bytes
    value: int = 0


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of a read-only ``eth_call``."""

    ok: bool
    return_data: bytes
    reason: str | None = None
    revert_message: str | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event log from a receipt."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True, slots=True)
class TxResult:
    """The outcome of sending a transaction; a revert is a value, not an exception.

    ``tx_hash`` is ``None`` when the simulation refused the call and nothing
    was sent. ``reason == "receipt_timeout"`` means the transaction was sent
    (``tx_hash`` is set) but no receipt arrived in time: it may still land, so
    reconcile before retrying.
    """

    ok: bool
    tx_hash: str | None
    reason: str | None = None
    revert_message: str | None = None
    block_number: int | None = None
    gas_used: int | None = None
    logs: tuple[LogEntry, ...] = ()
    contract_address: str | None = None

    @property
    def sent(self) -> bool:
        return self.tx_hash is not None


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """An ERC-20 ``Transfer`` log, as reconciliation reads it."""

    token: str
    tx_hash: str
    log_index: int
    block_number: int
    from_address: str
    to: str
    value: int


@dataclass(frozen=True, slots=True)
class DevAccount:
    """A funded account of a dev chain; its key is public knowledge, not a secret."""

    address: str
    private_key: SecretStr

    def signer(self) -> LocalSigner:
        return LocalSigner(self.private_key)


def anvil_dev_accounts(count: int = 10) -> tuple[DevAccount, ...]:
    """Anvil's well-known dev accounts (mnemonic ``test test … junk``)."""
    invariant(0 < count <= 100, "dev account count must be between 1 and 100")
    seed = seed_from_mnemonic(ANVIL_DEV_MNEMONIC, "")
    accounts = []
    for index in range(count):
        key = key_from_seed(seed, f"{_DEV_HD_PATH}/{index}")
        signer = LocalSigner(key)
        accounts.append(DevAccount(signer.address, signer.private_key))
    return tuple(accounts)


# ---------------------------------------------------------------- the chain


class Chain:
    """A chain reached through web3; see :class:`MemoryChain` and :class:`RpcChain`."""

    backend: ClassVar[Backend]
    rpc_url: str | None = None

    # Headroom over eth_estimateGas, in percent.
    gas_headroom_percent: ClassVar[int] = 20
    receipt_poll_s: float = 0.05  # how often to ask for a receipt; slower on real networks
    log_block_span_max: ClassVar[int] = 5_000

    def __init__(self, w3: Web3, *, receipt_timeout_s: float) -> None:
        self.w3 = w3
        self.receipt_timeout_s = receipt_timeout_s
        self._send_lock = threading.Lock()
        with self._rpc_errors():
            self.chain_id: int = int(w3.eth.chain_id)

    def __repr__(self) -> str:
        where = f" {self.rpc_url}" if self.rpc_url else ""
        return f"<{type(self).__name__}{where} chain_id={self.chain_id}>"

    @property
    def network(self) -> str:
        """The CAIP-2 id, e.g. ``eip155:31337``."""
        return caip2(self.chain_id)

    # ------------------------------------------------------------ reads

    def block_number(self) -> int:
        with self._rpc_errors():
            return int(self.w3.eth.block_number)

    def timestamp(self) -> int:
        """The chain's clock: the time its next block will carry, in unix seconds.

        That is the later of the latest block's timestamp and the wall clock:
        a dev chain mines only when asked, so its latest block can be minutes
        old, while the memory chain's blocks can run ahead of the wall clock.
        Authorization windows built on this are valid when they are submitted.
        """
        with self._rpc_errors():
            latest = int(self.w3.eth.get_block("latest")["timestamp"])
        return max(latest, int(time.time()))

    def native_balance(self, address: str) -> int:
        """The account's balance of the native coin (ETH), in wei."""
        with self._rpc_errors():
            return int(self.w3.eth.get_balance(checksum(address)))

    def code_at(self, address: str) -> bytes:
        with self._rpc_errors():
            return bytes(self.w3.eth.get_code(checksum(address)))

    def call(
        self, call: Call, *, sender: str | None = None, block: int | str = "latest"
    ) -> CallResult:
        """Run ``call`` read-only; a revert is a value with a reason."""
        tx = self._tx_params(call, sender)
        with self._rpc_errors():
            try:
                data = self.w3.eth.call(cast(Any, tx), block_identifier=cast(Any, block))
            except (ContractLogicError, TransactionFailed) as exc:
                message = revert_message(exc)
                return CallResult(False, b"", reason_for_revert(message), message)
        return CallResult(True, bytes(data))

    def authorization_state(self, token: str, authorizer: str, nonce: bytes) -> bool:
        """EIP-3009 ``authorizationState``: True once the nonce is used or cancelled."""
        invariant(len(nonce) == 32, "an EIP-3009 nonce is 32 bytes")
        selector = keccak(text="authorizationState(address,bytes32)")[:4]
        data = selector + bytes(12) + bytes.fromhex(checksum(authorizer)[2:]) + nonce
        result = self.call(Call(checksum(token), data))
        if not result.ok:
            raise ChainError(f"{token} has no authorizationState (not an EIP-3009 token?)")
        (used,) = abi_decode(["bool"], result.return_data)
        return bool(used)

    def logs(
        self,
        address: str,
        topics: list[Any],
        from_block: int,
        to_block: int | None = None,
    ) -> list[LogEntry]:
        """Event logs of one contract matching ``topics``, oldest first.

        ``topics`` follows ``eth_getLogs``: a list by position, where ``None``
        matches anything and a list matches any of its items. Long ranges are
        fetched in spans of ``log_block_span_max`` blocks, as public RPCs
        refuse large ranges.
        """
        address = checksum(address)
        last = self.block_number() if to_block is None else to_block
        found: list[LogEntry] = []
        start = max(0, from_block)
        while start <= last:
            end = min(last, start + self.log_block_span_max - 1)
            params = {"address": address, "fromBlock": start, "toBlock": end, "topics": topics}
            with self._rpc_errors():
                raw = self.w3.eth.get_logs(cast(Any, params))
            found.extend(_log_entry(log) for log in raw)
            start = end + 1
        return sorted(found, key=lambda e: (e.block_number, e.log_index))

    def transfer_events(
        self,
        token: str,
        from_block: int,
        to_block: int | None = None,
        addresses: list[str] | tuple[str, ...] | None = None,
    ) -> list[TransferEvent]:
        """ERC-20 ``Transfer`` logs of ``token`` in a block range, oldest first.

        With ``addresses``, only transfers from or to one of them.
        """
        last = self.block_number() if to_block is None else to_block
        topic_sets: list[list[Any]]
        if addresses:
            wanted = [address_topic(a) for a in addresses]
            topic_sets = [[_hex(TRANSFER_TOPIC), wanted], [_hex(TRANSFER_TOPIC), None, wanted]]
        else:
            topic_sets = [[_hex(TRANSFER_TOPIC)]]
        found: dict[tuple[str, int], TransferEvent] = {}
        for topics in topic_sets:
            for log in self.logs(token, topics, from_block, last):
                event = _transfer_event(log)
                if event is not None:
                    found[(event.tx_hash, event.log_index)] = event
        return sorted(found.values(), key=lambda e: (e.block_number, e.log_index))

    # ------------------------------------------------------------ writes

    def send(self, call: Call, *, sender: TxSigner, gas_limit: int | None = None) -> TxResult:
        """Simulate ``call``, then sign it with ``sender``, send it and wait for the receipt.

        A call the simulation refuses is not sent (``tx_hash is None``). A
        transaction mined with status 0 is ``ok=False`` with the reason found
        by replaying it on the parent block.
        """
        tx = self._tx_params(call, sender.address)
        with self._send_lock, self._rpc_errors():
            refused, gas = self._simulate(tx, gas_limit)
            if refused is not None:
                return refused
            latest = self.w3.eth.get_block("latest")
            base_fee = int(latest.get("baseFeePerGas", 0) or 0)
            tip = self._priority_fee()
            tx.update(
                gas=gas,
                nonce=self._next_nonce(sender.address),
                chainId=self.chain_id,
                maxFeePerGas=2 * base_fee + tip,
                maxPriorityFeePerGas=tip,
            )
            raw = sender.sign_transaction(tx)
            try:
                tx_hash = _hex(self.w3.eth.send_raw_transaction(raw))
            except (ContractLogicError, TransactionFailed) as exc:
                message = revert_message(exc)
                return TxResult(False, None, reason_for_revert(message), message)
            except (Web3RPCError, EthValidationError) as exc:  # the latter from py-evm
                refusal = _funds_refusal(exc)
                if refusal is not None:
                    return refusal
                raise ChainError(f"the node refused the transaction: {_one_line(exc)}") from None
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    cast(Any, tx_hash),
                    timeout=self.receipt_timeout_s,
                    poll_latency=self.receipt_poll_s,
                )
            except TimeExhausted:
                return TxResult(False, tx_hash, "receipt_timeout", None)
        return self._result_from_receipt(tx, tx_hash, receipt)

    def deploy(
        self, creation_code: bytes, *, sender: TxSigner, gas_limit: int | None = None
    ) -> TxResult:
        """Deploy a contract; ``contract_address`` is set on success."""
        return self.send(Call(None, creation_code), sender=sender, gas_limit=gas_limit)

    def advance_time(self, seconds: int) -> int:
        """Move a dev chain's clock forward and mine a block; return the new timestamp."""
        raise ChainError(f"{self!r} cannot move its clock (only dev chains can)")

    def dev_accounts(self) -> tuple[DevAccount, ...]:
        """Funded accounts with public keys; only dev chains have them."""
        raise ChainError(f"{self!r} has no dev accounts (only dev chains do)")

    def close(self) -> None:
        """Release connections; the chain must not be used afterwards."""

    # ------------------------------------------------------------ internals

    def _tx_params(self, call: Call, sender: str | None) -> dict[str, Any]:
        tx: dict[str, Any] = {"data": _hex(call.data), "value": call.value}
        if call.to is not None:
            tx["to"] = checksum(call.to)
        if sender is not None:
            tx["from"] = checksum(sender)
        return tx

    def _simulate(self, tx: dict[str, Any], gas_limit: int | None) -> tuple[TxResult | None, int]:
        """Return (a refusal, 0) or (None, the gas to send with)."""
        try:
            estimate = int(self.w3.eth.estimate_gas(cast(Any, tx)))
        except (ContractLogicError, TransactionFailed) as exc:
            message = revert_message(exc)
            return TxResult(False, None, reason_for_revert(message), message), 0
        gas = estimate + estimate * self.gas_headroom_percent // 100
        return None, gas if gas_limit is None else min(gas, gas_limit)

    def _priority_fee(self) -> int:
        return int(self.w3.eth.max_priority_fee)

    def _next_nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(checksum(address), "pending"))

    def _result_from_receipt(self, tx: dict[str, Any], tx_hash: str, receipt: Any) -> TxResult:
        logs = tuple(_log_entry(log) for log in receipt["logs"])
        block = int(receipt["blockNumber"])
        gas_used = int(receipt["gasUsed"])
        created = receipt.get("contractAddress")
        if int(receipt["status"]) == 1:
            address = to_checksum_address(created) if created else None
            return TxResult(True, tx_hash, None, None, block, gas_used, logs, address)
        # Mined but reverted: replay on the parent block to learn why.
        replay: dict[str, Any] = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        replay["gas"] = tx["gas"]
        message: str | None = None
        try:
            self.w3.eth.call(cast(Any, replay), block_identifier=block - 1)
        except (ContractLogicError, TransactionFailed) as exc:
            message = revert_message(exc)
        except Web3RPCError as exc:  # e.g. anvil's "EVM error OutOfGas"
            message = _one_line(exc)
        # A revert refunds the gas it did not use; only running out uses it all.
        reason = "out_of_gas" if gas_used >= int(tx["gas"]) else reason_for_revert(message)
        return TxResult(False, tx_hash, reason, message, block, gas_used, logs, None)

    @contextmanager
    def _rpc_errors(self) -> Iterator[None]:
        yield


class MemoryChain(Chain):
    """py-evm in this process: the embedded default, no node to run.

    Its genesis funds anvil's ten dev accounts, so addresses match the dev chain.
    """

    backend: ClassVar[Backend] = "memory"
    # py-evm's estimate_gas searches by re-running the call; a plain eth_call is
    # enough to simulate, and gas is then sent with a fixed generous limit (the
    # unused part is refunded, but the sender must hold enough ETH to cover it
    # up front: about 0.02 ETH). A batch larger than ~150 items needs gas_limit=.
    memory_gas_limit: ClassVar[int] = 8_000_000

    def __init__(self, *, accounts: int = 10) -> None:
        backend = PyEVMBackend.from_mnemonic(
            ANVIL_DEV_MNEMONIC, num_accounts=accounts, hd_path=_DEV_HD_PATH
        )
        self._tester = EthereumTester(backend)
        self._accounts = accounts
        super().__init__(Web3(EthereumTesterProvider(self._tester)), receipt_timeout_s=10.0)

    def dev_accounts(self) -> tuple[DevAccount, ...]:
        return anvil_dev_accounts(self._accounts)

    def advance_time(self, seconds: int) -> int:
        invariant(seconds > 0, "advance_time needs a positive number of seconds")
        target = self.timestamp() + seconds
        self._tester.time_travel(target)
        self._tester.mine_blocks(1)
        return self.timestamp()

    def _simulate(self, tx: dict[str, Any], gas_limit: int | None) -> tuple[TxResult | None, int]:
        gas = gas_limit or self.memory_gas_limit
        try:
            # With the gas it will be sent with, so py-evm's "can the sender
            # afford it" check matches the real send.
            self.w3.eth.call(cast(Any, {**tx, "gas": gas}))
        except (ContractLogicError, TransactionFailed) as exc:
            message = revert_message(exc)
            return TxResult(False, None, reason_for_revert(message), message), 0
        except EthValidationError as exc:
            refusal = _funds_refusal(exc)
            if refusal is None:
                raise
            return refusal, 0
        return None, gas

    def _priority_fee(self) -> int:
        return 1_000_000_000

    def _next_nonce(self, address: str) -> int:
        # Every transaction is mined at once, so "latest" is exact here.
        return int(self.w3.eth.get_transaction_count(checksum(address)))


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
        super().__init__(Web3(provider), receipt_timeout_s=receipt_timeout_s)
        if self.chain_id != ANVIL_CHAIN_ID:
            # Real networks make blocks every second or two and rate-limit callers.
            self.receipt_poll_s = 0.5

    def dev_accounts(self) -> tuple[DevAccount, ...]:
        if self.chain_id != ANVIL_CHAIN_ID:
            return super().dev_accounts()
        return anvil_dev_accounts()

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


def open_chain(
    where: str = "memory", *, timeout_s: float = 5.0, receipt_timeout_s: float = 60.0
) -> Chain:
    """Open ``"memory"`` (in-process py-evm) or a JSON-RPC URL (``http(s)://…``)."""
    if where == "memory":
        return MemoryChain()
    if where.startswith(("http://", "https://")):
        return RpcChain(where, timeout_s=timeout_s, receipt_timeout_s=receipt_timeout_s)
    raise ChainError(f"not a chain: {where!r} (want 'memory' or an http(s):// RPC URL)")


# ---------------------------------------------------------------- helpers


def address_topic(address: str) -> str:
    """An address as a 32-byte log topic, 0x-hex."""
    return _hex(bytes(12) + bytes.fromhex(checksum(address)[2:]))


def _log_entry(log: Any) -> LogEntry:
    return LogEntry(
        address=to_checksum_address(log["address"]),
        topics=tuple(bytes(t) for t in log["topics"]),
        data=bytes(log["data"]),
        log_index=int(log["logIndex"]),
        block_number=int(log["blockNumber"]),
        tx_hash=_hex(log["transactionHash"]),
    )


def _transfer_event(log: LogEntry) -> TransferEvent | None:
    if len(log.topics) != 3 or log.topics[0] != TRANSFER_TOPIC:
        return None
    return TransferEvent(
        token=log.address,
        tx_hash=log.tx_hash,
        log_index=log.log_index,
        block_number=log.block_number,
        from_address=to_checksum_address(log.topics[1][-20:]),
        to=to_checksum_address(log.topics[2][-20:]),
        value=int.from_bytes(log.data, "big"),
    )


def _funds_refusal(exc: BaseException) -> TxResult | None:
    """A refusal value if ``exc`` says the sender cannot pay for gas."""
    text = str(exc)
    if "insufficient funds" in text.lower() or "cannot afford" in text.lower():
        return TxResult(False, None, "insufficient_funds_for_gas", _one_line(exc))
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
