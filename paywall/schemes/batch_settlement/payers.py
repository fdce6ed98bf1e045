"""A channel payer's signatures checked as the escrow and the token will check them.

For a channel whose ``payerAuthorizer`` is zero, the escrow asks the payer
itself: ECDSA for an account without code, ERC-1271 for a contract wallet or
an EIP-7702 account (:func:`payer_signed`, through
``farthing.paywall.schemes.signatures``). A deposit's ReceiveWithAuthorization
is checked the way the token will before the facilitator simulates it
(:func:`deposit_signature_refusal`). Neither the escrow nor the ERC-3009
collector unwraps ERC-6492, so a wrapped signature is refused: a
counterfactual wallet is deployed before it opens a channel.
"""

from __future__ import annotations

from typing import Final

from farthing.paywall.schemes.batch_settlement.vouchers import deposit_nonce
from farthing.paywall.schemes.batch_settlement.wire import CODE_PREFIX, DepositPayload
from farthing.paywall.schemes.signatures import (
    check_signature,
    domain_separator_of,
    eip3009_digest,
)
from farthing.wallet.chain import Chain
from farthing.wallet.eip712 import RECEIVE_WITH_AUTHORIZATION
from farthing.wallet.erc6492 import unwrap

__all__ = [
    "ERR_DEPOSIT_SIMULATION_FAILED",
    "ERR_RECEIVE_AUTHORIZATION_SIGNATURE",
    "deposit_signature_refusal",
    "payer_signed",
]

ERR_DEPOSIT_SIMULATION_FAILED: Final = CODE_PREFIX + "deposit_simulation_failed"
ERR_RECEIVE_AUTHORIZATION_SIGNATURE: Final = CODE_PREFIX + "receive_authorization_signature"


def payer_signed(chain: Chain, payer: str, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``digest`` is ``payer``'s as the escrow checks it (no 6492)."""
    if unwrap(signature) is not None:
        return False
    return check_signature(chain, payer, digest, signature).valid


def deposit_signature_refusal(
    chain: Chain, collector: str, deposit: DepositPayload
) -> tuple[str, str] | None:
    """Why the token would refuse the deposit's signature, or ``None``."""
    auth = deposit.authorization
    if unwrap(auth.signature) is not None:
        return ERR_RECEIVE_AUTHORIZATION_SIGNATURE, (
            "the collector takes no ERC-6492 signature: deploy the wallet first"
        )
    config = deposit.config
    separator = domain_separator_of(chain, config.token)
    if separator is None:
        return ERR_DEPOSIT_SIMULATION_FAILED, "the token has no EIP-712 domain separator"
    digest = eip3009_digest(
        separator,
        RECEIVE_WITH_AUTHORIZATION,
        from_address=config.payer,
        to=collector,
        value=deposit.amount,
        valid_after=auth.valid_after,
        valid_before=auth.valid_before,
        nonce=deposit_nonce(deposit.voucher.channel_id, auth.salt),
    )
    check = check_signature(chain, config.payer, digest, auth.signature)
    if not check.valid:
        return ERR_RECEIVE_AUTHORIZATION_SIGNATURE, f"{check.reason}: {check.message}"
    return None
