"""The chain interface: one web3-backed :class:`Chain` both backends share.

Reads (``call``, ``logs``, ``transfer_events``), and ``send``, which simulates,
signs locally, sends and waits for the receipt, turning every revert into a
:class:`~farthing.wallet.chain.values.TxResult`. The backends override only
how they simulate, price, number and time-travel
(:mod:`farthing.wallet.chain.memory`, :mod:`farthing.wallet.chain.rpc`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal, cast

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError

from farthing.invariant import invariant
from farthing.wallet.address import checksum
from farthing.wallet.chain.values import (
    TRANSFER_TOPIC,
    Call,
    CallResult,
    DevAccount,
    LogEntry,
    TransferEvent,
    TxResult,
)
from farthing.wallet.errors import ChainError
from farthing.wallet.networks import caip2
from farthing.wallet.revert import reason_for_revert, revert_message
from farthing.wallet.signer import TxSigner

__all__ = ["Backend", "Chain", "address_topic", "funds_refusal"]

Backend = Literal["memory", "rpc"]


def _hex(value: bytes | str) -> str:
    """0x-prefixed lowercase hex (``HexBytes.hex()`` has no prefix in web3 v8)."""
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


class Chain:
    """A chain reached through web3; see :class:`MemoryChain` and :class:`RpcChain`."""

    backend: ClassVar[Backend]
    rpc_url: str | None = None

    # Headroom over eth_estimateGas, in percent.
    gas_headroom_percent: ClassVar[int] = 20
    receipt_poll_s: float = 0.05  # how often to ask for a receipt; slower on real networks
    log_block_span_max: ClassVar[int] = 5_000
    # What a revert raises on this backend (py-evm adds its own): a class
    # attribute, so the RPC path never imports eth-tester and py-evm.
    revert_errors: ClassVar[tuple[type[Exception], ...]] = (ContractLogicError,)

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
            except self.revert_errors as exc:
                message = revert_message(exc)
                return CallResult(False, b"", reason_for_revert(message), message)
        return CallResult(True, bytes(data))

    def call_many(
        self, calls: Sequence[Call], *, block: int | str = "latest"
    ) -> tuple[CallResult, ...]:
        """Run read-only ``calls`` against one block; one result each, in order.

        Here one after another; a JSON-RPC backend sends them in one batch.
        """
        return tuple(self.call(call, block=block) for call in calls)

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
            except self.revert_errors as exc:
                message = revert_message(exc)
                return TxResult(False, None, reason_for_revert(message), message)
            except (Web3RPCError, EthValidationError) as exc:  # the latter from py-evm
                refusal = funds_refusal(exc)
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

    def send_raw(self, raw: bytes) -> str:
        """Hand a signed transaction to the node; its hash, 0x-hex.

        The node's refusal raises as web3 raises it (``ContractLogicError``
        for a revert, ``Web3RPCError`` for anything else it refuses).
        """
        with self._rpc_errors():
            return _hex(self.w3.eth.send_raw_transaction(raw))

    def receipt(self, tx_hash: str) -> Any | None:
        """The receipt of ``tx_hash``, or ``None`` while it is not mined (or unknown).

        Numbers are ints; log topics and data are bytes.
        """
        with self._rpc_errors():
            try:
                return self.w3.eth.get_transaction_receipt(cast(Any, tx_hash))
            except TransactionNotFound:
                return None

    def wait_receipt(self, tx_hash: str, *, timeout_s: float, poll_s: float) -> Any | None:
        """The receipt of ``tx_hash`` once mined, polling every ``poll_s``; ``None`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.receipt(tx_hash)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll_s)

    def deploy(
        self, creation_code: bytes, *, sender: TxSigner, gas_limit: int | None = None
    ) -> TxResult:
        """Deploy a contract; ``contract_address`` is set on success."""
        return self.send(Call(None, creation_code), sender=sender, gas_limit=gas_limit)

    def advance_time(self, seconds: int) -> int:
        """Move a dev chain's clock forward and mine a block; return the new timestamp."""
        raise ChainError(f"{self!r} cannot move its clock (only dev chains can)")

    def set_code(self, address: str, code: bytes) -> None:
        """Write runtime ``code`` at ``address``; only dev chains can."""
        raise ChainError(f"{self!r} cannot write contract code (only dev chains can)")

    @property
    def is_dev(self) -> bool:
        """Whether this is a dev chain (the memory chain, or anvil)."""
        return False

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
        except self.revert_errors as exc:
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
        except self.revert_errors as exc:
            message = revert_message(exc)
        except Web3RPCError as exc:  # e.g. anvil's "EVM error OutOfGas"
            message = _one_line(exc)
        # A revert refunds the gas it did not use; only running out uses it all.
        reason = "out_of_gas" if gas_used >= int(tx["gas"]) else reason_for_revert(message)
        return TxResult(False, tx_hash, reason, message, block, gas_used, logs, None)

    @contextmanager
    def _rpc_errors(self) -> Iterator[None]:
        yield


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


def funds_refusal(exc: BaseException) -> TxResult | None:
    """A refusal value if ``exc`` says the sender cannot pay for gas."""
    text = str(exc)
    if "insufficient funds" in text.lower() or "cannot afford" in text.lower():
        return TxResult(False, None, "insufficient_funds_for_gas", _one_line(exc))
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
