"""A channel payer's signatures checked as the escrow and the token will check them.

For a channel whose ``payerAuthorizer`` is zero, the escrow asks the payer
itself: ECDSA for an account without code, ERC-1271 for a contract wallet or
an EIP-7702 account (:func:`payer_signed`, through
``farthing.paywall.schemes.signatures``). A deposit's ReceiveWithAuthorization
is checked the way the token will before the facilitator simulates it
(:func:`deposit_signature`).

Neither the escrow nor the ERC-3009 collector unwraps ERC-6492. A voucher
in a wrapper is refused (a channel whose payer is a counterfactual wallet
names a key as ``payerAuthorizer``). A deposit in one, from a wallet not
deployed yet, is verified by simulation as the shared check does it, and
its transaction deploys the wallet first (:func:`deposit_transaction`): one
Multicall3 ``aggregate3`` running the wrapper's factory call (allowed to
fail: someone may have deployed the wallet meanwhile), then the escrow's
``deposit`` with the inner signature (not allowed to fail), so the wallet
is deployed only if the deposit lands. Multicall3, never the facilitator's
key, calls the factory; its gas is estimated afresh and capped at
:data:`DEPOSIT_DEPLOY_GAS_MAX`. A wrapper from a wallet that has code
since is read for its inner signature, as ERC-6492 says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import (
    deposit_nonce,
    erc3009_collector_data,
)
from farthing.paywall.schemes.batch_settlement.wire import CODE_PREFIX, DepositPayload
from farthing.paywall.schemes.calldata import encode_call
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.paywall.schemes.signatures import (
    SignatureCheck,
    check_signature,
    domain_separator_of,
    eip3009_digest,
)
from farthing.wallet.chain import Call, Chain
from farthing.wallet.eip712 import RECEIVE_WITH_AUTHORIZATION
from farthing.wallet.erc6492 import unwrap

__all__ = [
    "DEPOSIT_DEPLOY_GAS_MAX",
    "ERR_DEPOSIT_SIMULATION_FAILED",
    "ERR_RECEIVE_AUTHORIZATION_SIGNATURE",
    "DepositTransaction",
    "deposit_signature",
    "deposit_transaction",
    "payer_signed",
]

ERR_DEPOSIT_SIMULATION_FAILED: Final = CODE_PREFIX + "deposit_simulation_failed"
ERR_RECEIVE_AUTHORIZATION_SIGNATURE: Final = CODE_PREFIX + "receive_authorization_signature"
# The most gas a deposit that deploys its payer's wallet may take: the
# deployment (a proxy's or our account's), the wallet's ERC-1271 check in the
# token, the collector's pull and the escrow's bookkeeping fit well under it.
DEPOSIT_DEPLOY_GAS_MAX: Final = 1_500_000
_AGGREGATE3: Final = "aggregate3((address,bool,bytes)[])"


def payer_signed(chain: Chain, payer: str, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``digest`` is ``payer``'s as the escrow checks it (no 6492)."""
    if unwrap(signature) is not None:
        return False
    return check_signature(chain, payer, digest, signature).valid


def deposit_signature(
    chain: Chain, collector: str, deposit: DepositPayload
) -> SignatureCheck | tuple[str, str]:
    """The deposit's signature as the token will check it, or why it would be refused.

    A valid check carries the signature the collector is to be given (a
    wrapper's inner one) and, for a wallet not deployed yet, its deployment.
    """
    auth = deposit.authorization
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
    return check


@dataclass(frozen=True, slots=True)
class DepositTransaction:
    """What settles a deposit: the call, and its gas cap (``None``: the usual estimate)."""

    call: Call
    gas_max: int | None


def deposit_transaction(
    chain: Chain, escrow: ChannelEscrow, collector: str, deposit: DepositPayload
) -> DepositTransaction | tuple[str, str]:
    """The deposit's transaction (its wallet deployed first when it has none yet), or a refusal."""
    signed = deposit_signature(chain, collector, deposit)
    if isinstance(signed, tuple):
        return signed
    auth = deposit.authorization
    collector_data = erc3009_collector_data(
        auth.valid_after, auth.valid_before, auth.salt, signed.signature
    )
    data = escrow.encode_deposit(deposit.config, deposit.amount, collector, collector_data)
    deployment = signed.deployment
    if deployment is None:
        return DepositTransaction(Call(escrow.address, data), None)
    if not chain.code_at(MULTICALL3_ADDRESS):
        return ERR_DEPOSIT_SIMULATION_FAILED, (
            "no Multicall3 on this chain to deploy the payer's wallet: deploy it first"
        )
    batch = encode_call(
        _AGGREGATE3,
        ["(address,bool,bytes)[]"],
        [[(deployment.factory, True, deployment.calldata), (escrow.address, False, data)]],
    )
    return DepositTransaction(Call(MULTICALL3_ADDRESS, batch), DEPOSIT_DEPLOY_GAS_MAX)
