"""The ``batch-settlement`` scheme's client part: what a payer signs, sends and checks.

The paying agent keeps the policy, the reservations, the channel rows and
the books; this module is the scheme's side of each step, with no chain
reads and no storage:

* reading an offer (:func:`read_offer`) and making its channel config
  (:func:`channel_config`, the payer choosing the salt) and id;
* a deposit's ERC-3009 ``ReceiveWithAuthorization`` to the collector, its
  nonce bound to the channel and to a salt derived from the deposit's id
  (:func:`deposit_salt`), so a retry signs the same bytes
  (:func:`deposit_authorization`, :func:`deposit_authorization_again`,
  :func:`sign_deposit`);
* the cumulative voucher and the payload that carries it
  (:func:`voucher_payload`, :func:`payment_header`);
* the spec's client checks on ``PAYMENT-RESPONSE`` (:func:`check_response`):
  ``chargedAmount`` at most the ceiling, ``channelState.chargedCumulativeAmount``
  (when sent) equal to the cumulative checked before plus this charge;
* a corrective 402 (:data:`CORRECTIVE_ERRORS`, :func:`read_correction`):
  the seller's ``chargedCumulativeAmount`` is owed only with a
  ``voucherState`` whose signature recovers to the payer, at least the
  chain's ``totalClaimed`` and at most the voucher signed
  (:meth:`Correction.owed`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from farthing.paywall.schemes.batch_settlement import extras, wire
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    deposit_nonce,
    sign_voucher,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.wire import PAYMENT_SIGNATURE_HEADER, X402_VERSION, b64_json, unb64_json
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.eip3009 import (
    Authorization,
    TokenDomain,
    build_authorization,
    sign_receive_authorization,
)
from farthing.wallet.money import Asset
from farthing.wallet.signer import Signer
from farthing.wallet.smart_account import SmartAccountSigner

__all__ = [
    "CORRECTIVE_ERRORS",
    "RESPONSE_HEADER_BYTES_MAX",
    "Correction",
    "OfferRefusal",
    "ResponseCheck",
    "channel_config",
    "channel_id_of",
    "channel_key",
    "check_response",
    "deposit_authorization",
    "deposit_authorization_again",
    "deposit_nonce_hex",
    "deposit_salt",
    "payment_header",
    "read_correction",
    "read_offer",
    "response_data",
    "sign_deposit",
    "voucher_payload",
    "voucher_signer",
]

# The refusals after which the seller's 402 carries its view of the channel.
CORRECTIVE_ERRORS: Final = frozenset(
    {wire.ERR_CUMULATIVE_AMOUNT_MISMATCH, wire.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED}
)
RESPONSE_HEADER_BYTES_MAX: Final = 64 * 1024
_ZERO_SALT: Final = b"\x00" * 32


# ---------------------------------------------------------------- the offer and the channel


@dataclass(frozen=True, slots=True)
class OfferRefusal:
    """Why an offer cannot be paid through a channel: a snake_case reason and a detail."""

    reason: str
    message: str


def read_offer(extra: object) -> extras.BatchExtra | OfferRefusal:
    """An offer's ``extra``, when this client can pay it (ERC-3009 deposits only)."""
    parsed = extras.parse_extra(extra)
    if isinstance(parsed, WireRefusal):
        return OfferRefusal("malformed_payment_required", parsed.reason)
    if parsed.asset_transfer_method not in (None, "eip3009"):
        return OfferRefusal("unsupported_scheme", "permit2 deposits")
    return parsed


def channel_config(
    *,
    payer: str,
    receiver: str,
    token: str,
    extra: extras.BatchExtra,
    salt: bytes = _ZERO_SALT,
    payer_authorizer: str | None = None,
) -> ChannelConfig:
    """The channel the offer asks for, with ``payer`` as payer.

    The vouchers' signer is ``payer_authorizer``, ``payer`` by default; a smart
    account names its owner key (``voucher_signer(signer).address``), so its
    vouchers are plain ECDSA the escrow and the seller check without asking
    the wallet.
    """
    return ChannelConfig(
        payer=payer,
        payer_authorizer=payer if payer_authorizer is None else payer_authorizer,
        receiver=receiver,
        receiver_authorizer=extra.receiver_authorizer,
        token=token,
        withdraw_delay_s=extra.withdraw_delay_s,
        salt=salt,
    )


def channel_id_of(domain: ChannelDomain, config: ChannelConfig) -> str:
    """A config's channel id as ``0x`` and 64 hex digits."""
    return "0x" + domain.channel_id(config).hex()


def channel_key(channel_id: str) -> bytes:
    """The 32 bytes of a ``0x``-hex channel id."""
    return bytes.fromhex(channel_id[2:])


# ---------------------------------------------------------------- deposits


def deposit_salt(deposit_id: int) -> int:
    """A deposit's salt, derived from its id (saved before signing), so a retry signs the same bytes."""
    digest = hashlib.sha256(b"farthing.agents.channel-deposit\x1f" + deposit_id.to_bytes(16, "big"))
    return int.from_bytes(digest.digest(), "big")


def _deposit_nonce(channel_id: str, deposit_id: int) -> bytes:
    """The EIP-3009 nonce of the deposit ``deposit_id`` into ``channel_id``: its salt bound to the channel."""
    return deposit_nonce(channel_key(channel_id), deposit_salt(deposit_id))


def deposit_nonce_hex(channel_id: str, deposit_id: int) -> str:
    """The EIP-3009 nonce of the deposit ``deposit_id`` into ``channel_id``, as ``0x`` hex."""
    return "0x" + _deposit_nonce(channel_id, deposit_id).hex()


def deposit_authorization(
    *,
    payer: str,
    collector: str,
    channel_id: str,
    deposit_id: int,
    value: int,
    now: int,
    valid_for_s: int,
    max_timeout_seconds: int,
) -> Authorization:
    """The terms of a new deposit: its nonce from the id, its window from ``now`` (the chain's clock)."""
    return build_authorization(
        from_address=payer,
        to=collector,
        value=value,
        valid_for_s=min(valid_for_s, max_timeout_seconds),
        now=now,
        nonce=_deposit_nonce(channel_id, deposit_id),
    )


def deposit_authorization_again(
    *,
    payer: str,
    collector: str,
    channel_id: str,
    deposit_id: int,
    value: int,
    valid_after: int,
    valid_before: int,
) -> Authorization:
    """An earlier deposit's terms, rebuilt from what was saved before it was signed."""
    return Authorization(
        from_address=payer,
        to=collector,
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=_deposit_nonce(channel_id, deposit_id),
    )


def sign_deposit(
    signer: Signer, asset: Asset, channel_id: str, authorization: Authorization, deposit_id: int
) -> wire.Erc3009Deposit:
    """Sign a deposit's ``ReceiveWithAuthorization``; its nonce must be the channel's for its salt."""
    if authorization.nonce != _deposit_nonce(channel_id, deposit_id):
        raise AssertionError("a deposit's nonce must be the channel's nonce for its salt")
    signed = sign_receive_authorization(signer, authorization, TokenDomain.for_asset(asset))
    return wire.Erc3009Deposit(
        valid_after=authorization.valid_after,
        valid_before=authorization.valid_before,
        salt=deposit_salt(deposit_id),
        signature=signed.signature,
    )


# ---------------------------------------------------------------- the voucher and the header


def voucher_signer(signer: Signer) -> Signer:
    """Who signs vouchers for ``signer``: itself, or a smart account's owner key."""
    return signer.owner_signer if isinstance(signer, SmartAccountSigner) else signer


def voucher_payload(
    signer: Signer,
    domain: ChannelDomain,
    config: ChannelConfig,
    channel_id: str,
    cumulative: int,
    *,
    deposit: wire.Erc3009Deposit | None = None,
    deposit_amount: int = 0,
) -> wire.DepositPayload | wire.VoucherPayload:
    """Sign the voucher ``cumulative`` on the channel (``config``'s id), with the deposit when there is one."""
    voucher = sign_voucher(voucher_signer(signer), domain, channel_key(channel_id), cumulative)
    if deposit is not None:
        return wire.DepositPayload(config, voucher, deposit_amount, deposit)
    return wire.VoucherPayload(config, voucher)


def payment_header(
    payload: wire.DepositPayload | wire.VoucherPayload,
    *,
    accepted: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    url: str,
) -> tuple[str, str]:
    """The ``PAYMENT-SIGNATURE`` header (name, value): the payload, the offer as sent, the resource."""
    body = {
        "x402Version": X402_VERSION,
        "payload": payload.to_wire(),
        "accepted": dict(accepted),
        "resource": dict(resource) if resource else {"url": url},
    }
    return PAYMENT_SIGNATURE_HEADER, b64_json(body)


# ---------------------------------------------------------------- the seller's answer


def response_data(header: str | None) -> dict[str, Any] | None:
    """A ``PAYMENT-RESPONSE`` header's object, or ``None`` when missing, too large or unreadable."""
    if header is None or len(header) > RESPONSE_HEADER_BYTES_MAX:
        return None
    try:
        data = unb64_json(header)
    except (ValueError, UnicodeDecodeError, RecursionError):  # binascii.Error is a ValueError
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class ResponseCheck:
    """What a successful response charged, and the client check it failed (``None``: none)."""

    charged: int
    violation: str | None
    tx_hash: str | None


def check_response(
    data: Mapping[str, Any], *, ceiling: int, channel_id: str, charged_before: int
) -> ResponseCheck:
    """The spec's client checks on a successful ``PAYMENT-RESPONSE``; see the module doc.

    ``ceiling`` is this request's price (the voucher's step), ``charged_before``
    the cumulative the payer had checked before it.
    """
    extra = extras.parse_response_extra(data.get("extra") or {})
    violation: str | None = None
    charged = ceiling
    if isinstance(extra, WireRefusal):
        violation = "channel_response_malformed"
    else:
        if extra.charged_amount is not None:
            charged = extra.charged_amount
        state = extra.channel_state
        if charged > ceiling:
            violation = "charge_above_ceiling"
        elif state is not None and "0x" + state.channel_id.hex() != channel_id:
            violation = "channel_id_mismatch"
        elif (
            state is not None
            and state.charged_cumulative_amount is not None
            and state.charged_cumulative_amount != charged_before + charged
        ):
            violation = "cumulative_inconsistent"
    tx_hash = data.get("transaction") if isinstance(data.get("transaction"), str) else None
    return ResponseCheck(charged, violation, tx_hash)


# ---------------------------------------------------------------- a corrective 402


@dataclass(frozen=True, slots=True)
class Correction:
    """The seller's view of one channel, sent with a corrective 402."""

    channel_id: str
    state: extras.ChannelStateWire
    voucher_state: extras.VoucherStateWire | None

    def owed(
        self, domain: ChannelDomain, *, payer: str, claimed: int, signed_max: int
    ) -> tuple[int, int]:
        """(charged, signed maximum) as far as ``payer`` can verify it owes them.

        ``claimed`` is the chain's ``totalClaimed`` (what the chain proves),
        ``signed_max`` the largest voucher the payer's records say it signed.
        """
        charged = claimed
        signed_max = max(signed_max, claimed)
        seller = self.state.charged_cumulative_amount
        if seller is not None and self.voucher_state is not None:
            signed = self.voucher_state.signed_max_claimable
            digest = domain.voucher_digest(channel_key(self.channel_id), signed)
            signer = recover_digest(digest, self.voucher_state.signature)  # None when refused
            # Our own signature over ``signed`` is the proof we committed to
            # it, even when our records of it were lost (a cold start).
            if signer == payer and claimed <= seller <= signed:
                charged = seller
                signed_max = max(signed_max, signed)
        return charged, signed_max


def read_correction(extra: object, channel_id: str) -> Correction | None:
    """The channel state a corrective 402's offer ``extra`` carries for ``channel_id``, if any."""
    parsed = extras.parse_extra(extra)
    if not isinstance(parsed, extras.BatchExtra) or parsed.channel_state is None:
        return None
    if "0x" + parsed.channel_state.channel_id.hex() != channel_id:
        return None
    return Correction(channel_id, parsed.channel_state, parsed.voucher_state)
