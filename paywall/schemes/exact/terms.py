"""The ``exact`` scheme's terms: the checks on a payment that need no chain.

A payment authorization must match the price it pays (scheme, network,
asset, EIP-712 domain, payee, amount), be valid now for long enough to be
settled, not stay spendable for longer than ``maxTimeoutSeconds`` allows,
and carry the payer's signature.
"""

from __future__ import annotations

from typing import Final

from farthing.paywall.wire import SCHEME_EXACT, PaymentPayload, PaymentRequirements, VerifyResult
from farthing.wallet.eip712 import verify_authorization_signature

__all__ = ["VALID_BEFORE_SKEW_S", "check_terms"]

# How far past now + maxTimeoutSeconds a validBefore may lie: the payer's clock
# (or the chain's, which a dev chain can run ahead) may differ from ours. The
# x402 clients sign validBefore = now + maxTimeoutSeconds exactly.
VALID_BEFORE_SKEW_S: Final = 60


def check_terms(
    payload: PaymentPayload,
    requirements: PaymentRequirements,
    *,
    now: int,
    margin_s: int,
    check_window: bool = True,
) -> VerifyResult | None:
    """The checks that need no chain: a refusal, or ``None`` when the terms hold.

    ``check_window=False`` skips the time window: a payment already being
    settled is matched against its terms and signature only.
    """
    auth = payload.authorization
    accepted = payload.accepted
    payer = auth.from_address

    def refuse(reason: str, message: str) -> VerifyResult:
        return VerifyResult(False, reason, payer, message)

    if requirements.scheme != SCHEME_EXACT or accepted.scheme != SCHEME_EXACT:
        return refuse(
            "unsupported_scheme", f"only the exact scheme is supported, not {accepted.scheme!r}"
        )
    if accepted.network != requirements.network:
        return refuse(
            "network_mismatch",
            f"paid on {accepted.network}, but the price is on {requirements.network}",
        )
    if accepted.asset != requirements.asset:
        return refuse(
            "asset_mismatch", f"paid in {accepted.asset}, but the price is in {requirements.asset}"
        )
    if (accepted.token_name, accepted.token_version) != (
        requirements.token_name,
        requirements.token_version,
    ):
        return refuse(
            "eip712_domain_mismatch", "signed for another EIP-712 name or version of the token"
        )
    if auth.to != requirements.pay_to or accepted.pay_to != requirements.pay_to:
        return refuse("pay_to_mismatch", f"pays {auth.to}, but the payee is {requirements.pay_to}")
    if auth.value != requirements.amount or accepted.amount != requirements.amount:
        return refuse(
            "amount_mismatch",
            f"authorizes {auth.value} atomic units, but the price is {requirements.amount}",
        )
    if check_window and auth.valid_before < now + margin_s:
        return refuse(
            "authorization_expired", f"the authorization is valid for less than {margin_s} s more"
        )
    if check_window and auth.valid_after > now:
        return refuse(
            "authorization_not_yet_valid", "the authorization's validAfter is in the future"
        )
    longest = now + requirements.max_timeout_seconds + VALID_BEFORE_SKEW_S
    if check_window and auth.valid_before > longest:
        return refuse(
            "authorization_valid_too_long",
            f"validBefore is {auth.valid_before - now} s away; at most "
            f"maxTimeoutSeconds ({requirements.max_timeout_seconds}) + {VALID_BEFORE_SKEW_S} s "
            "is accepted",
        )
    outcome = verify_authorization_signature(payload.signed(requirements.domain()), payer)
    if not outcome.valid:
        return refuse("invalid_signature", f"the signature does not verify ({outcome.reason})")
    return None
