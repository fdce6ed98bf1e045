"""The ``upto`` checks that need no chain: the terms, the time window, the signature, the extensions.

:func:`check_terms` runs the spec's verification order (Phase 3 of
``scheme_upto_evm.md``) on what the payload and the requirements say:
scheme and network, spender (the proxy), recipient (``witness.to`` is the
payee), facilitator (``witness.facilitator`` is one of ours), deadline
(still ``margin_s`` ahead; and, ours, no later than now + maxTimeoutSeconds
+ :data:`DEADLINE_SKEW_S`, so no payer hands out a ceiling spendable for
years), ``validAfter``, the amount (at verify the ceiling equals the
requirements' ``amount``; at settle the charge is at most the ceiling) and
the token. :func:`signature_refusal` checks an ECDSA signature against the
ceiling the payer signed, never the charge. :func:`eip2612_refusal` and
:func:`erc20_approval_refusal` check the gas-sponsoring extensions' own
fields and signatures. Each answers ``None`` or a :class:`WireRefusal`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.upto.contract import PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS
from farthing.paywall.schemes.upto.types import (
    ERR_AMOUNT_MISMATCH,
    ERR_DEADLINE_EXPIRED,
    ERR_DEADLINE_TOO_LONG,
    ERR_FACILITATOR_MISMATCH,
    ERR_INVALID_SIGNATURE,
    ERR_NETWORK_MISMATCH,
    ERR_NOT_YET_VALID,
    ERR_PAYLOAD_FORMAT,
    ERR_RECIPIENT_MISMATCH,
    ERR_SETTLEMENT_EXCEEDS_AMOUNT,
    ERR_SPENDER,
    ERR_TOKEN_MISMATCH,
)
from farthing.paywall.schemes.upto.wire import (
    Eip2612Permit,
    Erc20Approval,
    UptoPayment,
    UptoRequirements,
)
from farthing.wallet.abi_words import address_word, keccak, word
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.eip712 import domain_separator, recover_digest

__all__ = [
    "DEADLINE_MARGIN_S",
    "DEADLINE_SKEW_S",
    "ApprovalTransaction",
    "check_terms",
    "decode_approval",
    "eip2612_digest",
    "eip2612_refusal",
    "erc20_approval_refusal",
    "signature_refusal",
]

# The deadline must still be this far ahead (the SDK's buffer): the settlement is mined inside it.
DEADLINE_MARGIN_S: Final = 6
# Clock skew allowed past now + maxTimeoutSeconds for a deadline.
DEADLINE_SKEW_S: Final = 60

_PERMIT_TYPEHASH: Final = keccak(
    b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
_APPROVE_SELECTOR: Final = keccak(b"approve(address,uint256)")[:4]


def _no(reason: str, detail: str) -> WireRefusal:
    return WireRefusal(reason, detail)


def check_terms(
    payment: UptoPayment,
    requirements: UptoRequirements,
    *,
    facilitators: Collection[str],
    now: int,
    settle: bool,
    margin_s: int = DEADLINE_MARGIN_S,
) -> WireRefusal | None:
    """The spec's checks that read no chain, in its order; ``settle`` switches the amount rule."""
    auth = payment.authorization
    if payment.accepted.network != requirements.network:
        return _no(ERR_NETWORK_MISMATCH, "the payment's network is not the requirements'")
    if auth.spender != UPTO_PROXY_ADDRESS:
        return _no(ERR_SPENDER, "the spender must be the x402UptoPermit2Proxy")
    if auth.to != requirements.pay_to or payment.accepted.pay_to != requirements.pay_to:
        return _no(ERR_RECIPIENT_MISMATCH, "witness.to is not the requirements' payTo")
    if auth.facilitator not in facilitators:
        return _no(ERR_FACILITATOR_MISMATCH, "witness.facilitator is not this facilitator")
    if auth.from_address == ZERO_ADDRESS:
        return _no(ERR_PAYLOAD_FORMAT, "from must not be the zero address")
    if auth.deadline < now + margin_s:
        return _no(ERR_DEADLINE_EXPIRED, "the permit's deadline has passed or is too close")
    timeout = requirements.max_timeout_seconds or payment.accepted.max_timeout_seconds
    if timeout and auth.deadline > now + timeout + DEADLINE_SKEW_S:
        return _no(ERR_DEADLINE_TOO_LONG, "the deadline is later than maxTimeoutSeconds allows")
    if auth.valid_after > now:
        return _no(ERR_NOT_YET_VALID, "witness.validAfter is in the future")
    if auth.amount == 0:
        return _no(ERR_AMOUNT_MISMATCH, "the ceiling must be positive")
    if settle:
        if requirements.amount > auth.amount:
            return _no(ERR_SETTLEMENT_EXCEEDS_AMOUNT, "the charge is more than the signed ceiling")
    elif auth.amount != requirements.amount:
        return _no(ERR_AMOUNT_MISMATCH, "permitted.amount is not the requirements' amount")
    if auth.token != requirements.asset or payment.accepted.asset != requirements.asset:
        return _no(ERR_TOKEN_MISMATCH, "permitted.token is not the requirements' asset")
    return None


def signature_refusal(payment: UptoPayment, chain_id: int) -> WireRefusal | None:
    """None if ``payment.signature`` is the payer's ECDSA signature of the ceiling it signed.

    A contract wallet's signature (ERC-1271) does not recover: the facilitator
    asks the wallet itself (it needs the chain).
    """
    digest = payment.authorization.digest(chain_id)
    if recover_digest(digest, payment.signature) == payment.payer:
        return None
    return _no(ERR_INVALID_SIGNATURE, "the signature does not recover to from")


def eip2612_refusal(
    permit: Eip2612Permit, payment: UptoPayment, requirements: UptoRequirements, now: int
) -> WireRefusal | None:
    """The ``eip2612GasSponsoring`` info's fields and signature against this payment.

    The token's EIP-712 name and version come from the requirements (the
    seller's), the permit's nonce is checked against the token by the
    facilitator. The proxy requires the permit's value to equal the ceiling.
    """
    auth = payment.authorization
    if permit.from_address != auth.from_address:
        return _no("eip2612_from_mismatch", "info.from is not the payer")
    if permit.asset != requirements.asset:
        return _no("eip2612_asset_mismatch", "info.asset is not the token")
    if permit.spender != PERMIT2_ADDRESS:
        return _no("eip2612_spender_not_permit2", "info.spender is not Permit2")
    if permit.amount != auth.amount:
        return _no("eip2612_amount_mismatch", "info.amount must equal the signed ceiling")
    if permit.deadline < now + DEADLINE_MARGIN_S:
        return _no("eip2612_deadline_expired", "the permit's deadline has passed")
    if not requirements.token_name or not requirements.token_version:
        return _no("eip2612_missing_domain", "the requirements name no token name and version")
    digest = eip2612_digest(
        permit, requirements.token_name, requirements.token_version, requirements.chain_id
    )
    if recover_digest(digest, permit.signature) != permit.from_address:
        return _no("eip2612_invalid_signature", "the permit's signature does not recover to from")
    return None


def eip2612_digest(permit: Eip2612Permit, name: str, version: str, chain_id: int) -> bytes:
    """The EIP-712 digest of an EIP-2612 ``Permit`` under the token's domain (``name``, ``version``)."""
    separator = domain_separator(name, version, chain_id, permit.asset)
    struct = keccak(
        _PERMIT_TYPEHASH
        + address_word(permit.from_address)
        + address_word(permit.spender)
        + word(permit.amount)
        + word(permit.nonce)
        + word(permit.deadline)
    )
    return keccak(b"\x19\x01" + separator + struct)


@dataclass(frozen=True, slots=True)
class ApprovalTransaction:
    """What a signed ``approve`` transaction says: signer, chain, nonce, target, spender, amount, gas."""

    sender: str
    chain_id: int
    nonce: int
    to: str
    spender: str
    amount: int
    gas: int
    max_fee_per_gas: int
    value: int = 0
    max_priority_fee_per_gas: int = 0
    access_list_size: int = 0
    data: bytes = b""

    def intrinsic_gas(self) -> int:
        """The gas a node asks of it before running it (base and calldata; no access list)."""
        return 21_000 + sum(4 if byte == 0 else 16 for byte in self.data)


def decode_approval(raw: bytes) -> ApprovalTransaction | WireRefusal:
    """A signed EIP-1559 (or EIP-2930) ``approve(spender, amount)`` transaction, decoded, or why not."""
    try:
        sender = checksum(Account.recover_transaction(HexBytes(raw)))
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    except Exception:  # noqa: BLE001 - any undecodable input is a refusal, never a crash
        return _no("erc20_approval_tx_parse_failed", "the signed transaction does not decode")
    data = bytes(fields.get("data") or b"")
    target = fields.get("to") or b""
    if data[:4] != _APPROVE_SELECTOR or len(data) != 68:
        return _no("erc20_approval_tx_wrong_selector", "the transaction is not an approve() call")
    spender, amount = abi_decode(["address", "uint256"], data[4:])
    max_fee = fields.get("maxFeePerGas", fields.get("gasPrice", 0))
    access_list = fields.get("accessList") or ()
    return ApprovalTransaction(
        sender=sender,
        chain_id=int(fields.get("chainId", 0)),
        nonce=int(fields.get("nonce", 0)),
        to=checksum("0x" + bytes(target).hex()) if len(bytes(target)) == 20 else ZERO_ADDRESS,
        spender=checksum(spender),
        amount=int(amount),
        gas=int(fields.get("gas", 0)),
        max_fee_per_gas=int(max_fee),
        value=int(fields.get("value", 0)),
        max_priority_fee_per_gas=int(fields.get("maxPriorityFeePerGas", max_fee)),
        access_list_size=len(access_list),
        data=data,
    )


def erc20_approval_refusal(
    approval: Erc20Approval, payment: UptoPayment, requirements: UptoRequirements
) -> WireRefusal | None:
    """The ``erc20ApprovalGasSponsoring`` info and its signed transaction against this payment.

    The transaction must be the payer's, on this chain, to the token, calling
    ``approve(Permit2, amount)`` with at least the ceiling. Its nonce and fees
    are the facilitator's to check against the chain.
    """
    auth = payment.authorization
    if approval.from_address != auth.from_address:
        return _no("erc20_approval_from_mismatch", "info.from is not the payer")
    if approval.asset != requirements.asset:
        return _no("erc20_approval_asset_mismatch", "info.asset is not the token")
    if approval.spender != PERMIT2_ADDRESS:
        return _no("erc20_approval_spender_not_permit2", "info.spender is not Permit2")
    tx = decode_approval(approval.signed_transaction)
    if isinstance(tx, WireRefusal):
        return tx
    if tx.sender != auth.from_address:
        return _no(
            "erc20_approval_tx_signer_mismatch", "the transaction is not signed by the payer"
        )
    if tx.chain_id != requirements.chain_id:
        return _no("erc20_approval_tx_wrong_chain", "the transaction is for another chain")
    if tx.to != requirements.asset:
        return _no("erc20_approval_tx_wrong_target", "the transaction's target is not the token")
    if tx.spender != PERMIT2_ADDRESS:
        return _no("erc20_approval_tx_wrong_spender", "the approve() spender is not Permit2")
    if tx.amount < auth.amount or tx.amount != approval.amount:
        return _no("erc20_approval_amount_mismatch", "the approval does not cover the ceiling")
    # A transaction the node would refuse after the facilitator funded its gas leaves
    # the payer the funding and moves no token: each is refused before anything is sent.
    if tx.value != 0:
        return _no("erc20_approval_tx_has_value", "the approve() transaction sends ETH")
    if tx.access_list_size:
        return _no("erc20_approval_tx_access_list", "the approve() transaction has an access list")
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
        return _no("erc20_approval_tx_fee_invalid", "the priority fee is above the max fee")
    if tx.gas < tx.intrinsic_gas():
        return _no("erc20_approval_tx_gas_too_low", "the gas limit is below the intrinsic gas")
    return None
