"""farthing.paywall: charge for content and APIs with x402 v2.

The names below are the public surface; the packages hold more detail (the
map is ``docs/architecture.md``): ``edge`` (the seller's HTTP edge:
``PaywallMiddleware``, routes and prices, the free preview, the browser's
402 page, receipts and sign-in), ``schemes`` (one package per x402 scheme:
``exact``, ``batch_settlement``, ``auth_capture``), ``facilitator`` (verify
and settle, in-process, by URL, or as ``farthing facilitator serve``),
``records`` (payment rows, the merchant's books, the resolve sweep), ``site``
(``farthing paywall init`` and ``serve``: config, reverse proxy, reports),
``wire`` (the x402 v2 headers and JSON every scheme shares) and ``cli``.
Start with ``docs/paywall.md`` and ``docs/channels.md``.
"""

from farthing.paywall.edge.middleware import PaywallMiddleware, PaywallOptions
from farthing.paywall.edge.preview import split_preview
from farthing.paywall.edge.pricing import Quote, parse_price
from farthing.paywall.edge.routes import PaidRoute, PriceRequest
from farthing.paywall.errors import (
    FacilitatorUnavailableError,
    PaymentStoreError,
    PaywallConfigError,
    PaywallError,
    PriceError,
    UpstreamError,
)
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.facilitator.local import (
    Facilitator,
    LocalFacilitator,
    ResolvingFacilitator,
    Supported,
)
from farthing.paywall.facilitator.remote import RemoteFacilitator
from farthing.paywall.records.books import (
    BookingResult,
    ChannelRevenueBook,
    LedgerRevenueBook,
    RevenueBook,
    SettledPayment,
    revenue_transfer_id,
)
from farthing.paywall.records.payments import PaymentKey, PaymentRecord, PaymentState
from farthing.paywall.records.store import PaymentStore
from farthing.paywall.schemes.batch_settlement.books import ChannelBookkeeper
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer, ClaimReport
from farthing.paywall.schemes.batch_settlement.reconcile import (
    ChannelBreak,
    ChannelReconciliation,
    reconcile_channel_books,
)
from farthing.paywall.schemes.batch_settlement.server import CHARGE_HEADER, ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelRecord, ChannelStore
from farthing.paywall.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    SettleResult,
    VerifyResult,
    decode_payment_signature,
    encode_payment_signature,
)

__all__ = [
    "CHARGE_HEADER",
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "BookingResult",
    "ChannelBookkeeper",
    "ChannelBreak",
    "ChannelClaimer",
    "ChannelOptions",
    "ChannelReconciliation",
    "ChannelRecord",
    "ChannelRevenueBook",
    "ChannelStore",
    "ClaimReport",
    "Facilitator",
    "FacilitatorUnavailableError",
    "LedgerRevenueBook",
    "LocalFacilitator",
    "PaidRoute",
    "PaymentKey",
    "PaymentPayload",
    "PaymentRecord",
    "PaymentRequired",
    "PaymentRequirements",
    "PaymentState",
    "PaymentStore",
    "PaymentStoreError",
    "PaywallConfigError",
    "PaywallError",
    "PaywallMiddleware",
    "PaywallOptions",
    "PriceError",
    "PriceRequest",
    "Quote",
    "RemoteFacilitator",
    "ResolvingFacilitator",
    "RevenueBook",
    "SettleResult",
    "SettledPayment",
    "Supported",
    "UpstreamError",
    "VerifyResult",
    "decode_payment_signature",
    "encode_payment_signature",
    "facilitator_app",
    "parse_price",
    "reconcile_channel_books",
    "revenue_transfer_id",
    "split_preview",
]
