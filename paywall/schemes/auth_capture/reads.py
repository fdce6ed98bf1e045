"""What the auth-capture facilitator reads from the chain, and the refusal a failed read becomes.

:class:`EscrowReads` asks as the operator: the escrow's ``paymentState``, a
simulation of an escrow call, the token's ``balanceOf`` and the refund
collector's ``allowance``, a transaction's receipt. A chain that does not
answer is ``FacilitatorUnavailableError`` (an outage, never a payment
outcome); any other chain error, or a reverted simulation, raises
:class:`Refused` with the spec's reason, which the facilitator's entry points
turn into a refusal value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from web3.exceptions import TransactionNotFound

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.schemes.auth_capture.contract import (
    AuthCaptureEscrow,
    PaymentState,
    custom_error_name,
)
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.paywall.schemes.auth_capture.types import (
    ERR_REFUND_FUNDING_UNAVAILABLE,
    ERR_SIMULATION_FAILED,
    ESCROW_ERROR_REASONS,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.reverts import error_reason
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain
from farthing.wallet.eip712 import keccak256
from farthing.wallet.errors import ChainError, ChainUnavailableError
from farthing.wallet.networks import AuthCaptureContracts

__all__ = ["EscrowReads", "Refused", "refuse"]

_BALANCE_OF: Final = bytes(keccak256(b"balanceOf(address)"))[:4]
_ALLOWANCE: Final = bytes(keccak256(b"allowance(address,address)"))[:4]


class Refused(Exception):
    """Internal: unwinds a check to its entry point, where it becomes a refusal value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def refuse(refusal: WireRefusal | None) -> None:
    """Raise a check's refusal, if there is one."""
    if refusal is not None:
        raise Refused(refusal.reason, refusal.detail)


class EscrowReads:
    """The chain as the operator ``operator`` sees it, for one escrow deployment."""

    def __init__(
        self,
        chain: Chain,
        escrow: AuthCaptureEscrow,
        contracts: AuthCaptureContracts,
        operator: str,
    ) -> None:
        self.chain = chain
        self.escrow = escrow
        self.contracts = contracts
        self.operator = operator

    def __repr__(self) -> str:
        return f"EscrowReads({self.chain!r}, operator={self.operator})"

    def read(self, read: Callable[[], Any]) -> Any:
        """Run one chain read: an outage raises, any other chain error refuses."""
        try:
            return read()
        except ChainUnavailableError as exc:
            raise FacilitatorUnavailableError(str(exc)) from None
        except ChainError as exc:
            raise Refused(ERR_SIMULATION_FAILED, str(exc)) from None

    def state(self, info: PaymentInfo) -> PaymentState:
        """The escrow's ``paymentState`` of ``info``."""
        state: PaymentState = self.read(lambda: self.escrow.payment_state(info))
        return state

    def simulate(self, data: bytes) -> None:
        """Call the escrow with ``data`` as the operator; a revert refuses with its reason."""
        result = self.read(
            lambda: self.chain.call(Call(self.escrow.address, data), sender=self.operator)
        )
        if not result.ok:
            raise Refused(self.reason(result.reason, result.revert_message),
                          "the simulation reverted")  # fmt: skip

    @staticmethod
    def reason(reason: str | None, revert_message: str | None) -> str:
        """The spec's reason for an escrow call that failed (its custom error, if any)."""
        name = custom_error_name(revert_message)
        key = error_reason(name) if name is not None else (reason or "")
        return ESCROW_ERROR_REASONS.get(key, ERR_SIMULATION_FAILED)

    def balance(self, token: str, owner: str) -> int:
        """``owner``'s balance of ``token``, in atomic units."""
        data = _BALANCE_OF + abi_encode(["address"], [checksum(owner)])
        result = self.read(lambda: self.chain.call(Call(checksum(token), data)))
        if not result.ok:
            raise Refused(ERR_SIMULATION_FAILED, "the token has no balanceOf")
        return int(abi_decode(["uint256"], result.return_data)[0])

    def allowance(self, token: str) -> int:
        """What the refund collector may still pull from the operator."""
        spender = checksum(self.contracts.operator_refund_collector)
        data = _ALLOWANCE + abi_encode(["address", "address"], [self.operator, spender])
        result = self.read(lambda: self.chain.call(Call(checksum(token), data)))
        if not result.ok:
            raise Refused(ERR_REFUND_FUNDING_UNAVAILABLE, "the token has no allowance")
        return int(abi_decode(["uint256"], result.return_data)[0])

    def receipt(self, tx_hash: str) -> Mapping[str, Any] | None:
        """The receipt of ``tx_hash``, or None while the node has none."""
        try:
            receipt = self.read(lambda: self.chain.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return dict(receipt) if receipt is not None else None
