"""A batch-settlement payment at the edge: the scheme's server part decides, this sends.

``farthing.paywall.schemes.batch_settlement.server`` checks the voucher (or
deposit, or refund), holds the charge and runs the handler buffered through
the callback given here; this module answers with its corrective 402, its
JSON reply, or the buffered answer with ``PAYMENT-RESPONSE``, handed to
:meth:`ChannelPaywall.deliver` so the held charge becomes final only once the
answer reached the server.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from farthing.invariant import invariant
from farthing.paywall.edge.asgi import (
    BodyTooLarge,
    Buffered,
    Send,
    run_buffered,
    send_buffered,
    send_json,
)
from farthing.paywall.edge.challenge import Challenger, Priced
from farthing.paywall.edge.metered import metered_run
from farthing.paywall.records.books import ChannelAsset
from farthing.paywall.schemes.batch_settlement.server import ChannelPaywall
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment
from farthing.paywall.wire import PAYMENT_RESPONSE_HEADER

__all__ = ["serve_channel"]


async def serve_channel(
    app: Any,
    scope: dict[str, Any],
    receive: Any,
    send: Send,
    *,
    challenger: Challenger,
    channels: ChannelPaywall,
    priced: Priced,
    payment: ChannelPayment,
    body_bytes_max: int,
) -> None:
    """A channel payment (farthing.paywall.schemes.batch_settlement.server decides; this sends)."""
    offer = priced.channel
    invariant(offer is not None, "the route offers a channel")
    assert offer is not None

    async def run() -> Buffered:
        try:
            return await run_buffered(app, scope, receive, body_bytes_max=body_bytes_max)
        except BodyTooLarge:
            return Buffered(status=500, body=bytearray(b'{"error":"response_too_large"}'))

    quoted = priced.quote.asset
    asset = ChannelAsset(offer.network, offer.asset, quoted.decimals, quoted.symbol)
    # An answer the app streams (it asked for a meter) is sent as it comes, charged as it ends.
    metered = metered_run(app, scope, receive, send, channels=channels, payment=payment)
    reply, buffered = await channels.handle(offer, payment, run, asset=asset, metered=metered)
    if reply.status == 402:
        if reply.corrective is not None:
            corrected = replace(offer, extra={**offer.extra, **reply.corrective})
            priced = replace(priced, channel=corrected)
        reason = reply.reason or "invalid_payment"
        detail = f"The payment was refused: {reply.detail or reason}."
        await challenger.send_402(send, priced, reason, detail)
        return
    header = (
        [(PAYMENT_RESPONSE_HEADER.encode(), reply.payment_response.encode())]
        if reply.payment_response is not None
        else []
    )
    if reply.body is not None:
        await send_json(send, reply.status, reply.body, header)
        return
    if buffered is None:  # streamed (farthing.paywall.edge.metered): already sent
        return
    # A held charge becomes final once the answer is handed to the server.
    await channels.deliver(reply, lambda: send_buffered(send, buffered, header))
