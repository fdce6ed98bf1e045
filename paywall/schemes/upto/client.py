"""The payer's part of ``upto``: sign a ceiling for an offer, and the one-time Permit2 approval.

:func:`upto_payment` signs a Permit2 witness transfer of up to the offer's
``amount`` to its ``payTo``, settleable only by the offer's
``extra.facilitatorAddress`` and only until now + ``maxTimeoutSeconds``;
:func:`payment_header` is its ``PAYMENT-SIGNATURE``. Permit2 needs the
payer's token approval once: :func:`approve_permit2` sends it (the payer
pays the gas), or, when the facilitator sponsors it,
:func:`sign_eip2612_permit` (a gasless EIP-2612 permit) or
:func:`sign_erc20_approval` (a signed ``approve`` transaction the
facilitator broadcasts) go with the payment. :func:`permit2_allowance`
reads what is approved already.
"""

from __future__ import annotations

from typing import Any, Final

from eth_abi.abi import decode as abi_decode

from farthing.paywall.schemes.calldata import arg_types, encode_call
from farthing.paywall.schemes.upto.checks import eip2612_digest
from farthing.paywall.schemes.upto.contract import ERC20_SIGNATURES, PERMIT2_ADDRESS
from farthing.paywall.schemes.upto.permit import UptoAuthorization, new_nonce, sign_authorization
from farthing.paywall.schemes.upto.wire import (
    Eip2612Permit,
    Erc20Approval,
    UptoPayment,
    UptoRequirements,
)
from farthing.paywall.wire import b64_json
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.errors import SigningError
from farthing.wallet.money import UINT256_MAX
from farthing.wallet.signer import Signer, TxSigner
from farthing.wallet.smart_account import SmartAccountSigner

__all__ = [
    "APPROVE_GAS_LIMIT",
    "approve_permit2",
    "payment_header",
    "permit2_allowance",
    "sign_eip2612_permit",
    "sign_erc20_approval",
    "token_nonce",
    "upto_payment",
]

# Gas for an ERC-20 approve (the SDK's figure); the facilitator funds at most this much.
APPROVE_GAS_LIMIT: Final = 70_000

_PERMIT_TYPES: Final = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def _call(to: str, name: str, *args: Any) -> Call:
    signature = ERC20_SIGNATURES[name]
    return Call(to, encode_call(signature, arg_types(signature), list(args)))


def _read_uint(chain: Chain, call: Call) -> int:
    result = chain.call(call)
    if not result.ok or len(result.return_data) < 32:
        raise SigningError(f"the token did not answer {call.to}: {result.revert_message}")
    return int(abi_decode(["uint256"], result.return_data[:32])[0])


def upto_payment(
    offer: UptoRequirements,
    signer: Signer,
    *,
    now: int,
    resource_url: str | None = None,
    nonce: int | None = None,
    eip2612: Eip2612Permit | None = None,
    erc20_approval: Erc20Approval | None = None,
) -> UptoPayment:
    """Sign up to ``offer.amount`` for ``offer``: the payment to send, ceiling and all.

    ``now`` is unix seconds (the chain's clock on a dev chain); the permit's
    deadline is now + ``offer.max_timeout_seconds``. Raises ``ValueError`` for
    an offer that names no facilitator (it cannot be signed safely) or no
    timeout, ``SigningError`` if the signature does not recover.
    """
    if offer.facilitator_address is None:
        raise ValueError("the upto offer names no extra.facilitatorAddress")
    if offer.max_timeout_seconds <= 0:
        raise ValueError("the upto offer has no maxTimeoutSeconds")
    authorization = UptoAuthorization(
        from_address=signer.address,
        token=offer.asset,
        amount=offer.amount,
        nonce=new_nonce() if nonce is None else nonce,
        deadline=now + offer.max_timeout_seconds,
        to=offer.pay_to,
        facilitator=offer.facilitator_address,
        valid_after=0,
    )
    signature = sign_authorization(signer, authorization, offer.chain_id)
    return UptoPayment(
        accepted=offer,
        authorization=authorization,
        signature=signature,
        eip2612=eip2612,
        erc20_approval=erc20_approval,
        resource_url=resource_url,
    )


def payment_header(payment: UptoPayment) -> str:
    """The ``PAYMENT-SIGNATURE`` header value of ``payment``."""
    return b64_json(payment.to_wire())


def permit2_allowance(chain: Chain, token: str, owner: str) -> int:
    """How much of ``token`` ``owner`` has approved Permit2 for."""
    return _read_uint(chain, _call(token, "allowance", owner, PERMIT2_ADDRESS))


def token_nonce(chain: Chain, token: str, owner: str) -> int:
    """``owner``'s next EIP-2612 nonce at ``token``."""
    return _read_uint(chain, _call(token, "nonces", owner))


def approve_permit2(
    chain: Chain, signer: TxSigner, token: str, amount: int = UINT256_MAX
) -> TxResult:
    """The direct one-time approval: ``token.approve(Permit2, amount)``, gas paid by the payer."""
    return chain.send(_call(token, "approve", PERMIT2_ADDRESS, amount), sender=signer)


def sign_eip2612_permit(
    signer: Signer, offer: UptoRequirements, *, nonce: int, deadline: int
) -> Eip2612Permit:
    """A gasless EIP-2612 permit letting Permit2 spend the offer's ceiling (``eip2612GasSponsoring``).

    The x402UptoPermit2Proxy requires the permit's value to equal the signed
    ceiling, so the value is ``offer.amount``. ``nonce`` is the token's
    :func:`token_nonce` for the signer.
    """
    if not offer.token_name or not offer.token_version:
        raise ValueError("the offer names no token EIP-712 name and version")
    domain = {
        "name": offer.token_name,
        "version": offer.token_version,
        "chainId": offer.chain_id,
        "verifyingContract": offer.asset,
    }
    message = {
        "owner": signer.address,
        "spender": PERMIT2_ADDRESS,
        "value": offer.amount,
        "nonce": nonce,
        "deadline": deadline,
    }
    types = {name: [dict(f) for f in fields] for name, fields in _PERMIT_TYPES.items()}
    signature = bytes(signer.sign_typed_data(domain, types, "Permit", message))
    permit = Eip2612Permit(
        from_address=signer.address,
        asset=offer.asset,
        spender=PERMIT2_ADDRESS,
        amount=offer.amount,
        nonce=nonce,
        deadline=deadline,
        signature=signature,
    )
    _check_permit(permit, offer, signer)
    return permit


def _check_permit(permit: Eip2612Permit, offer: UptoRequirements, signer: Signer) -> None:
    digest = eip2612_digest(permit, offer.token_name, offer.token_version, offer.chain_id)
    expected, signature = permit.from_address, permit.signature
    if isinstance(signer, SmartAccountSigner):
        # The account's owner signs (6492-wrapped while the account is not deployed).
        expected, signature = signer.owner, signer.owner_signature(signature)
    if recover_digest(digest, signature) != expected:
        raise SigningError("the EIP-2612 permit does not recover to its signer")


def sign_erc20_approval(
    chain: Chain, signer: TxSigner, offer: UptoRequirements, *, amount: int = UINT256_MAX
) -> Erc20Approval:
    """A signed ``approve(Permit2, amount)`` transaction for the facilitator to broadcast.

    Signed at the payer's current nonce and the chain's current fees
    (``erc20ApprovalGasSponsoring``); the facilitator funds its gas if the
    payer has none, then settles right after it.
    """
    latest = chain.w3.eth.get_block("latest")
    base_fee = int(latest.get("baseFeePerGas", 0) or 0)
    tip = 1_000_000_000 if chain.is_dev else int(chain.w3.eth.max_priority_fee)
    call = _call(offer.asset, "approve", PERMIT2_ADDRESS, amount)
    tx = {
        "type": 2,
        "chainId": offer.chain_id,
        "nonce": int(chain.w3.eth.get_transaction_count(checksum(signer.address), "pending")),
        "to": offer.asset,
        "value": 0,
        "data": "0x" + call.data.hex(),
        "gas": APPROVE_GAS_LIMIT,
        "maxFeePerGas": 2 * base_fee + tip,
        "maxPriorityFeePerGas": tip,
    }
    return Erc20Approval(
        from_address=signer.address,
        asset=offer.asset,
        spender=PERMIT2_ADDRESS,
        amount=amount,
        signed_transaction=bytes(signer.sign_transaction(tx)),
    )
