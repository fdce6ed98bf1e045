"""What a worker sees of a job: the terms for everyone, the delivery and the pay for its worker.

The agent's own view (:meth:`farthing.jobs.store.JobView.to_json`) holds its
books' ids, the review's decision and the escrow's terms; the workers' page
and API show less. Anyone sees the title, specification, criteria, the price
in the worker's currency and in USDC, the deadline and whether the job is
still open. The worker who accepted also sees their delivery, the review's
verdict and reasons, and what was paid: held, captured and refunded (ints of
atomic units as decimal strings, with a display form) and every transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from farthing.jobs.states import JobState
from farthing.jobs.store import JobView
from farthing.wallet.money import Asset

__all__ = ["SETTLED_STATES", "price_display", "worker_view"]

# Once here the agent has decided: the worker's page shows what was paid.
SETTLED_STATES: Final = frozenset(
    {JobState.PARTIALLY_PAID, JobState.PAID, JobState.VOIDED, JobState.REFUNDED, JobState.RECLAIMED}
)


def price_display(job: JobView) -> str:
    """``"500 INR"``: the price in the worker's currency, from its int of minor units."""
    value = Decimal(job.price_amount).scaleb(-job.currency_decimals)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {job.currency}"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def worker_view(job: JobView, asset: Asset, viewer: str | None, *, now_s: int) -> dict[str, Any]:
    """The job as ``viewer`` (a checksummed address, or None) may see it; JSON-ready."""
    yours = viewer is not None and job.worker is not None and job.worker == viewer
    view: dict[str, Any] = {
        "id": job.id,
        "title": job.title,
        "specification": job.specification,
        "criteria": job.criteria,
        "price": {
            "amount": str(job.price_amount),
            "currency": job.currency,
            "decimals": job.currency_decimals,
            "display": price_display(job),
        },
        "rate": job.rate,
        "amount": str(job.amount),
        "amountDisplay": asset.format(job.amount),
        "asset": {
            "symbol": asset.symbol,
            "decimals": asset.decimals,
            "network": asset.network,
            "address": asset.address,
        },
        "deadline": job.deadline,
        "deadlineIso": _iso(job.deadline),
        "state": str(job.state),
        "open": job.state is JobState.OPEN and now_s < job.deadline,
        "yours": yours,
    }
    if not yours:
        return view
    review = job.review or {}
    verdict = review.get("verdict")
    view.update(
        worker=job.worker,
        delivery=None
        if job.delivery is None
        else {"kind": job.delivery_kind, "content": job.delivery},
        review=None
        if verdict is None
        else {
            "decision": verdict.get("decision"),
            "fractionBps": verdict.get("fraction_bps"),
            "reasons": list(verdict.get("reasons") or []),
        },
        payment={
            "settled": job.state in SETTLED_STATES,
            "held": str(job.held),
            "captured": str(job.captured),
            "refunded": str(job.refunded),
            "heldDisplay": asset.format(job.held),
            "capturedDisplay": asset.format(job.captured),
            "refundedDisplay": asset.format(job.refunded),
            "paymentHash": job.payment_hash,
            "authorizeTx": job.authorize_tx,
            "captureTxs": list(job.capture_txs),
            "voidTx": job.void_tx,
            "refundTxs": list(job.refund_txs),
            "reclaimTx": job.reclaim_tx,
        },
    )
    return view
