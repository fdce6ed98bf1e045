"""What a voucher must pass: the checks that need no row, and those against the row.

:func:`check_voucher` is pure and runs before any lock: the config hashes to
the channel id, belongs to the offer, and a plain EOA ``payerAuthorizer``
signed the voucher (recovered here; a zero one means an ERC-1271 wallet the
facilitator must have verified). :func:`refusal` judges the voucher against
the row as it is now: the cumulative amount must be ``charged + held +
price`` exactly (as the spec says), above the claimed total, and within what
the escrow will still hold (:attr:`ChannelRecord.spendable`). A refund's
zero-charge voucher is judged by :func:`check_refund`.
"""

from __future__ import annotations

import time
from typing import Final

from farthing.paywall.schemes.batch_settlement.state.database import ChannelDatabase
from farthing.paywall.schemes.batch_settlement.state.record import (
    NO_DEPOSIT,
    ChannelRecord,
    ChannelTerms,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, SignedVoucher
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CHANNEL_ID_MISMATCH,
    ERR_CHANNEL_NOT_FOUND,
    ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
    ERR_CUMULATIVE_EXCEEDS_BALANCE,
    ERR_INVALID_VOUCHER_SIGNATURE,
)
from farthing.wallet.address import checksum
from farthing.wallet.eip712 import recover_digest

__all__ = ["check_refund", "check_voucher", "refusal"]

_ZERO_ADDRESS: Final = "0x" + "00" * 20


def check_voucher(
    db: ChannelDatabase,
    terms: ChannelTerms,
    config: ChannelConfig,
    voucher: SignedVoucher,
    *,
    signature_verified: bool,
) -> ChargeRefused | None:
    """The checks that need no state: id, terms, and the voucher's signer (see ``ChannelStore``)."""
    if db.domain.channel_id(config) != voucher.channel_id:
        return ChargeRefused(ERR_CHANNEL_ID_MISMATCH, "the config does not hash to channelId")
    reason = terms.refusal(config)
    if reason is not None:
        return ChargeRefused(reason, "the channel config does not match the offer")
    if config.payer_authorizer == checksum(_ZERO_ADDRESS):
        if not signature_verified:
            return ChargeRefused(
                ERR_INVALID_VOUCHER_SIGNATURE, "a smart-wallet voucher needs the facilitator"
            )
        return None
    digest = db.domain.voucher_digest(voucher.channel_id, voucher.max_claimable_amount)
    if recover_digest(digest, voucher.signature) != config.payer_authorizer:
        return ChargeRefused(
            ERR_INVALID_VOUCHER_SIGNATURE, "the voucher is not signed by payerAuthorizer"
        )
    return None


def _seconds_left(record: ChannelRecord) -> int:
    """Whole seconds until the row's holds lapse (at least 1): a busy payer's wait."""
    return max(1, -(-(record.held_until_ns - time.time_ns()) // 1_000_000_000))


def refusal(record: ChannelRecord, voucher: SignedVoucher, price: int) -> ChargeRefused | None:
    """Why ``voucher`` cannot pay ``price`` on ``record`` (its live view), or ``None``."""
    ceiling = voucher.max_claimable_amount
    if record.balance == 0:
        return ChargeRefused(ERR_CHANNEL_NOT_FOUND, "the channel has no balance", record)
    if record.held > 0 and record.charged < ceiling <= record.charged + record.held:
        # A voucher whose request is still being answered (a copy, or a
        # retry before the hold lapsed): not stale, and not to resync on.
        return ChargeRefused(
            ERR_CHANNEL_BUSY,
            "this voucher's request is still being answered; retry it after "
            f"{_seconds_left(record)} s",
            record,
        )
    if ceiling != record.charged + record.held + price:
        # A stale client, or an old voucher replayed: the corrective 402 resyncs it.
        return ChargeRefused(
            ERR_CUMULATIVE_AMOUNT_MISMATCH,
            "maxClaimableAmount must be chargedCumulativeAmount + amount",
            record,
        )
    if ceiling <= record.total_claimed:
        return ChargeRefused(
            ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
            "the voucher is not above the claimed total",
            record,
        )
    if ceiling > record.balance:
        return ChargeRefused(
            ERR_CUMULATIVE_EXCEEDS_BALANCE, "the voucher is above the channel's balance", record
        )
    if ceiling > record.spendable:
        # A withdrawal could finalize, or a refund land, before this voucher is
        # claimed: it would then be above what the escrow holds, never paid.
        return ChargeRefused(
            ERR_CUMULATIVE_EXCEEDS_BALANCE,
            "the voucher is above the balance left after the channel's pending "
            "withdrawal or refund",
            record,
        )
    return None


def check_refund(
    db: ChannelDatabase,
    terms: ChannelTerms,
    config: ChannelConfig,
    voucher: SignedVoucher,
    *,
    signature_verified: bool,
) -> ChannelRecord | ChargeRefused:
    """A refund's zero-charge voucher: its ceiling must equal ``charged`` (see ``ChannelStore``)."""
    refused = check_voucher(db, terms, config, voucher, signature_verified=signature_verified)
    if refused is not None:
        return refused
    record = db.get(voucher.channel_id)
    if record is None:
        return NO_DEPOSIT
    if voucher.max_claimable_amount != record.charged:
        return ChargeRefused(
            ERR_CUMULATIVE_AMOUNT_MISMATCH,
            "a refund voucher's maxClaimableAmount must be chargedCumulativeAmount",
            record,
        )
    if voucher.max_claimable_amount < record.total_claimed:
        return ChargeRefused(
            ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
            "the voucher is below the claimed total",
            record,
        )
    return record
