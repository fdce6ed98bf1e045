"""The x402 ``batch-settlement`` server → facilitator payloads: ``claim`` and ``settle``.

A receiver's server claims the latest vouchers on chain in one batch
(:class:`ClaimPayload`) and sweeps its claimed total of a token to itself
(:class:`SettlePayload`). Parsing is strict as in ``wire``; a refusal is a
``WireRefusal`` with ``…_claim_payload`` or ``…_settle_payload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from farthing.paywall.schemes.batch_settlement.contract import VoucherClaim
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CLAIM_PAYLOAD,
    ERR_INVALID_PAYLOAD_TYPE,
    ERR_SETTLE_PAYLOAD,
    PAYLOAD_CLAIM,
    PAYLOAD_SETTLE,
    parse_amount,
    parse_config,
)
from farthing.paywall.schemes.fields import (
    Malformed,
    WireRefusal,
    address,
    need,
    object_of,
    signature,
    to_hex,
)

__all__ = ["ClaimPayload", "SettlePayload", "parse_claim_payload", "parse_settle_payload"]


@dataclass(frozen=True, slots=True)
class ClaimPayload:
    """``type: "claim"``: the latest vouchers to record on chain, in one batch.

    ``authorizer_signature`` is the receiver authorizer's ``ClaimBatch``
    signature when the server holds that key; without it the facilitator signs.
    """

    claims: tuple[VoucherClaim, ...]
    authorizer_signature: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": PAYLOAD_CLAIM,
            "claims": [
                {
                    "voucher": {
                        "channel": c.config.to_wire(),
                        "maxClaimableAmount": str(c.max_claimable_amount),
                    },
                    "signature": to_hex(c.signature),
                    "totalClaimed": str(c.total_claimed),
                }
                for c in self.claims
            ],
        }
        if self.authorizer_signature is not None:
            out["claimAuthorizerSignature"] = to_hex(self.authorizer_signature)
        return out


@dataclass(frozen=True, slots=True)
class SettlePayload:
    """``type: "settle"``: sweep a receiver's claimed total of one token to it."""

    receiver: str
    token: str

    def to_wire(self) -> dict[str, str]:
        return {"type": PAYLOAD_SETTLE, "receiver": self.receiver, "token": self.token}


def _claim_row(value: object, where: str) -> VoucherClaim:
    data = object_of(value, where)
    voucher = object_of(need(data, "voucher", where), f"{where}.voucher")
    ceiling = parse_amount(
        need(voucher, "maxClaimableAmount", f"{where}.voucher"),
        f"{where}.voucher.maxClaimableAmount",
    )
    total = parse_amount(need(data, "totalClaimed", where), f"{where}.totalClaimed")
    if total > ceiling:
        raise Malformed(f"{where}.totalClaimed is above the voucher's ceiling")
    return VoucherClaim(
        config=parse_config(need(voucher, "channel", f"{where}.voucher"), f"{where}.channel"),
        max_claimable_amount=ceiling,
        signature=signature(need(data, "signature", where), f"{where}.signature"),
        total_claimed=total,
    )


def parse_claim_payload(value: object, *, claims_max: int = 1000) -> ClaimPayload | WireRefusal:
    """Parse a server's ``claim`` payload; at most ``claims_max`` rows."""
    try:
        data = object_of(value, "payload")
        if data.get("type") != PAYLOAD_CLAIM:
            return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "payload.type must be claim")
        rows = need(data, "claims", "payload")
        if not isinstance(rows, list) or not 0 < len(rows) <= claims_max:
            raise Malformed(f"claims must be a list of 1 to {claims_max} rows")
        authorizer_signature = data.get("claimAuthorizerSignature")
        return ClaimPayload(
            tuple(_claim_row(row, f"claims[{i}]") for i, row in enumerate(rows)),
            None
            if authorizer_signature is None
            else signature(authorizer_signature, "claimAuthorizerSignature"),
        )
    except Malformed as exc:
        return WireRefusal(ERR_CLAIM_PAYLOAD, exc.detail)


def parse_settle_payload(value: object) -> SettlePayload | WireRefusal:
    """Parse a server's ``settle`` payload."""
    try:
        data = object_of(value, "payload")
        if data.get("type") != PAYLOAD_SETTLE:
            return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "payload.type must be settle")
        return SettlePayload(
            receiver=address(need(data, "receiver", "payload"), "receiver"),
            token=address(need(data, "token", "payload"), "token"),
        )
    except Malformed as exc:
        return WireRefusal(ERR_SETTLE_PAYLOAD, exc.detail)
