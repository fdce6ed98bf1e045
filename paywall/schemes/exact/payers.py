"""``exact`` paid from a contract wallet: its signature checked on chain, its settlement call.

The fast path (``terms.py``) knows only keys: a signature that is not a
plain ECDSA one by ``authorization.from`` is refused there with
``invalid_signature``. :func:`contract_wallet_refusal` gives that payer its
second hearing through ``farthing.paywall.schemes.signatures``: ERC-1271 for
a deployed wallet or an EIP-7702 account, ERC-6492 for one not deployed yet.

:func:`settlement_call` is what the facilitator sends: the token's v,r,s
``transferWithAuthorization`` for a key's signature (as before), the
``bytes signature`` overload for a contract wallet's (USDC v2.2 has it; so
does our Stablecoin), and for a counterfactual wallet one Multicall3
``aggregate3`` that runs the factory call, then the transfer, atomically.
Multicall3, not the facilitator, is the factory's caller, so a hostile
factory call acts as a contract that holds nothing, never as the
facilitator's key (on a chain without Multicall3 such a payment is not
settled: the transfer alone is refused in its estimate, nothing is sent). A
contract wallet's settlement gets a fresh gas estimate
capped at :data:`CONTRACT_WALLET_GAS_MAX` (its cost depends on the wallet).
"""

from __future__ import annotations

from typing import Final

from farthing.paywall.schemes.calldata import encode_call
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.paywall.schemes.signatures import check_signature
from farthing.paywall.wire import PaymentPayload, PaymentRequirements, VerifyResult
from farthing.wallet.chain import Call, Chain
from farthing.wallet.eip712 import authorization_digest, recover_digest
from farthing.wallet.eip3009 import SignedAuthorization
from farthing.wallet.erc6492 import unwrap
from farthing.wallet.token import Stablecoin

__all__ = ["CONTRACT_WALLET_GAS_MAX", "contract_wallet_refusal", "settlement_call"]

# The most gas a contract wallet's settlement may take, its deployment
# included: a transfer (~60k), a wallet's check and a proxy's deployment fit.
CONTRACT_WALLET_GAS_MAX: Final = 1_500_000
_AGGREGATE3: Final = "aggregate3((address,bool,bytes)[])"


def contract_wallet_refusal(
    chain: Chain, payload: PaymentPayload, requirements: PaymentRequirements, refused: VerifyResult
) -> VerifyResult | None:
    """``refused`` (the fast path's ``invalid_signature``) unless a contract wallet signed."""
    auth = payload.authorization
    digest = authorization_digest(auth, requirements.domain())
    check = check_signature(chain, auth.from_address, digest, payload.signature)
    if check.valid:
        return None
    if check.kind == "eoa" and check.reason == "invalid_signature":
        return refused
    return VerifyResult(
        False,
        "invalid_signature",
        auth.from_address,
        f"the signature does not verify ({check.reason}: {check.message})",
    )


def settlement_call(
    chain: Chain, token: Stablecoin, payload: PaymentPayload, requirements: PaymentRequirements
) -> tuple[Call, int | None]:
    """The call that settles ``payload``, and its gas cap (``None``: a key's, the usual limit)."""
    domain = requirements.domain()
    auth = payload.authorization
    signature = payload.signature
    if (
        len(signature) == 65
        and recover_digest(authorization_digest(auth, domain), signature) == auth.from_address
    ):
        return token.transfer_with_authorization_call(payload.signed(domain)), None
    wrapped = unwrap(signature)
    inner = wrapped.signature if wrapped is not None and not isinstance(wrapped, str) else signature
    signed = SignedAuthorization(auth, inner, domain)
    transfer = token.transfer_with_authorization_call(signed, "bytes")
    if wrapped is None or isinstance(wrapped, str) or chain.code_at(auth.from_address):
        return transfer, CONTRACT_WALLET_GAS_MAX
    if not chain.code_at(MULTICALL3_ADDRESS):
        # No neutral caller for the factory here: the transfer alone, which the
        # token refuses in the estimate (no wallet yet), so nothing is sent.
        return transfer, CONTRACT_WALLET_GAS_MAX
    # Not deployed yet: deploy and transfer in one transaction. The factory
    # call may fail (someone deployed the wallet meanwhile); the transfer may not.
    data = encode_call(
        _AGGREGATE3,
        ["(address,bool,bytes)[]"],
        [
            [
                (wrapped.factory, True, wrapped.factory_calldata),
                (token.address, False, transfer.data),
            ]
        ],
    )
    return Call(MULTICALL3_ADDRESS, data), CONTRACT_WALLET_GAS_MAX
