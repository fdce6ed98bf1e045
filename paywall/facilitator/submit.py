"""The settlement sender: one relayer key, many settlements in flight.

``Chain.send`` (farthing.wallet) does everything for one transaction under
one lock: estimate gas, read fees, read the account nonce, send, wait for the
receipt, about seven RPC round trips with the lock held. A facilitator
settling a stream of payments needs less per transaction, so this sender
keeps what does not change between settlements:

* the relayer's next nonce, held locally and re-read from the chain
  (``pending``) after any failed send, so a gap or a reuse heals itself;
* the gas limit per (contract, function), estimated once, doubled (unused gas
  is refunded; only the cap is charged up front);
* the fee caps, refreshed every ``fee_refresh_s``.

The lock covers only signing and ``eth_sendRawTransaction``; receipts are
awaited outside it, so settlements pipeline. There is no per-send simulation:
verify has just checked the signature, window, nonce and balance (the x402
SDK's facilitator does the same by default); a settlement that reverts anyway
is mined with status 0 and its reason is read by replaying it.

**Several processes, one key.** Given ``shared`` (the paywall's
:class:`~farthing.paywall.records.store.PaymentStore`), the nonce is allocated in that
database instead of held in memory: under the relayer's row lock, the larger
of the stored next nonce and the node's pending count, advanced only once the
node has accepted the transaction. Processes sharing the key then take turns
at signing and sending (a few milliseconds each) and still await receipts in
parallel; a failed send leaves no gap, and a key also used outside the
database heals from the pending count. Without ``shared``, give each process
its own key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol, cast

from web3.exceptions import ContractLogicError, Web3RPCError

from farthing.faults import crash_point
from farthing.paywall.facilitator.onchain import receipt_logs
from farthing.paywall.records.payments import NonceTicket
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.revert import reason_for_revert, revert_message
from farthing.wallet.signer import TxSigner

__all__ = ["GAS_HEADROOM_FACTOR", "SharedNonces", "Submitter"]

GAS_HEADROOM_FACTOR: Final = 2


class SharedNonces(Protocol):
    """Relayer nonces kept where every process using the key sees them (a database)."""

    def relayer_nonce(
        self, network: str, address: str, chain_next: Callable[[], int]
    ) -> AbstractContextManager[NonceTicket]: ...


class Submitter:
    """Sends calls signed by ``signer`` on ``chain`` and waits for their receipts."""

    def __init__(
        self,
        chain: Chain,
        signer: TxSigner,
        *,
        fee_refresh_s: float = 2.0,
        shared: SharedNonces | None = None,
    ) -> None:
        self.chain = chain
        self.signer = signer
        self._shared = shared
        self._fee_refresh_s = fee_refresh_s
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._gas: dict[tuple[str | None, bytes], int] = {}
        self._fees: tuple[int, int, float] | None = None  # (max fee, tip, read at)

    def send(self, call: Call, *, gas_max: int | None = None) -> TxResult:
        """Send ``call``; a revert or a receipt timeout is a value, an RPC outage raises.

        ``gas_max`` is for a call whose cost depends on who signed (a contract
        wallet's check): its gas is estimated afresh, never cached, and a call
        estimated above ``gas_max`` is refused (``gas_above_limit``), not sent.
        """
        w3 = self.chain.w3
        key = (call.to, call.data[:4])
        with self._lock:
            gas = self._gas.get(key) if gas_max is None else None
            if gas is None:
                try:
                    estimate = int(w3.eth.estimate_gas(cast(Any, self._params(call))))
                except ContractLogicError as exc:
                    message = revert_message(exc)
                    return TxResult(False, None, reason_for_revert(message), message)
                if gas_max is not None and estimate > gas_max:
                    return TxResult(
                        False, None, "gas_above_limit", f"estimated {estimate} gas, over {gas_max}"
                    )
                gas = estimate * GAS_HEADROOM_FACTOR
                if gas_max is None:
                    self._gas[key] = gas
                else:
                    gas = min(gas, gas_max)
            max_fee, tip = self._fee_caps()
            tx = {
                **self._params(call),
                "gas": gas,
                "chainId": self.chain.chain_id,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
            }
            shared = self._shared
            sent = self._send_local(tx) if shared is None else self._send_shared(shared, tx)
            if isinstance(sent, TxResult):
                return sent
            tx_hash = sent
        # The node has the transaction; its receipt is not read yet.
        crash_point("paywall.after_submit")
        receipt = self.chain.wait_receipt(
            tx_hash,
            timeout_s=self.chain.receipt_timeout_s,
            poll_s=min(self.chain.receipt_poll_s, 0.02),
        )
        if receipt is None:
            return TxResult(False, tx_hash, "receipt_timeout", None)
        return self._result(tx, tx_hash, receipt)

    def _pending_count(self) -> int:
        address = cast(Any, self.signer.address)
        return int(self.chain.w3.eth.get_transaction_count(address, "pending"))

    def _raw_send(self, tx: dict[str, Any]) -> str | TxResult:
        """The hash, or a refusal by the node as a value (nothing was sent)."""
        try:
            return self.chain.send_raw(self.signer.sign_transaction(tx))
        except (ContractLogicError, Web3RPCError) as exc:
            message = revert_message(exc) if isinstance(exc, ContractLogicError) else str(exc)
            return TxResult(False, None, reason_for_revert(message), message)

    def _send_local(self, tx: dict[str, Any]) -> str | TxResult:
        if self._nonce is None:
            self._nonce = self._pending_count()
        tx["nonce"] = self._nonce
        try:
            sent = self._raw_send(tx)
        except BaseException:
            self._nonce = None
            raise
        if isinstance(sent, TxResult):
            self._nonce = None  # re-read it: the node may know better
            return sent
        self._nonce += 1
        return sent

    def _send_shared(self, shared: SharedNonces, tx: dict[str, Any]) -> str | TxResult:
        with shared.relayer_nonce(
            self.chain.network, self.signer.address, self._pending_count
        ) as ticket:
            tx["nonce"] = ticket.nonce
            sent = self._raw_send(tx)
            if not isinstance(sent, TxResult):
                ticket.sent()
            return sent

    def _params(self, call: Call) -> dict[str, Any]:
        return {
            "from": self.signer.address,
            "to": call.to,
            "data": "0x" + call.data.hex(),
            "value": call.value,
        }

    def _fee_caps(self) -> tuple[int, int]:
        now = time.monotonic()
        if self._fees is None or now - self._fees[2] > self._fee_refresh_s:
            w3 = self.chain.w3
            base = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            tip = int(w3.eth.max_priority_fee)
            # Twice the base fee: room for six full blocks of fee increases.
            self._fees = (2 * base + tip, tip, now)
        return self._fees[0], self._fees[1]

    def _result(self, tx: dict[str, Any], tx_hash: str, receipt: Any) -> TxResult:
        logs = tuple(receipt_logs(receipt, tx_hash))
        block = int(receipt["blockNumber"])
        gas_used = int(receipt["gasUsed"])
        if int(receipt["status"]) == 1:
            return TxResult(True, tx_hash, None, None, block, gas_used, logs)
        message: str | None = None
        replay = {k: tx[k] for k in ("from", "to", "data", "value", "gas")}
        try:
            self.chain.w3.eth.call(cast(Any, replay), block_identifier=block - 1)
        except (ContractLogicError, Web3RPCError) as exc:
            message = revert_message(exc)
        reason = "out_of_gas" if gas_used >= int(tx["gas"]) else reason_for_revert(message)
        return TxResult(False, tx_hash, reason, message, block, gas_used, logs)
