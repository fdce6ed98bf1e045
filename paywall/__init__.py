"""farthing.paywall: charge for content and APIs with x402 v2.

The names below are the public surface; the modules hold more detail:
``middleware`` (the pure-ASGI ``PaywallMiddleware``), ``routes`` and
``pricing`` (what costs what, fiat at a stored rate), ``preview`` (the free
part of an article), ``wire`` (the x402 v2 headers and JSON), ``facilitator``
(verify and settle in-process), ``remote`` (a facilitator by URL),
``facilitator_api`` and ``facilitator_cli`` (``farthing facilitator serve``),
``store`` (nonce claims and payment records), ``books`` (revenue in the
ledger), ``resolve`` (pending settlements and unbooked revenue), ``proxy``,
``config`` and ``cli`` (``farthing paywall serve``). x402 ``batch-settlement``
lives in the ``channel_*`` modules: ``channel_paywall`` (offers, vouchers,
deposits, refunds), ``channel_state`` (per-channel rows), ``channel_claims``
(claim and settle), ``channel_books`` and ``channel_reconcile`` (the merchant's
books and their reconciliation), ``channel_facilitator``, ``channel_wire`` and
``channel_types``. Start with ``docs/paywall.md`` and ``docs/channels.md``.
"""

from farthing.paywall.books import (
    BookingResult,
    ChannelRevenueBook,
    LedgerRevenueBook,
    RevenueBook,
    SettledPayment,
    revenue_transfer_id,
)
from farthing.paywall.channel_books import ChannelBookkeeper
from farthing.paywall.channel_claims import ChannelClaimer, ClaimReport
from farthing.paywall.channel_paywall import CHARGE_HEADER, ChannelOptions
from farthing.paywall.channel_reconcile import (
    ChannelBreak,
    ChannelReconciliation,
    reconcile_channel_books,
)
from farthing.paywall.channel_state import ChannelRecord, ChannelStore
from farthing.paywall.errors import (
    FacilitatorUnavailableError,
    PaymentStoreError,
    PaywallConfigError,
    PaywallError,
    PriceError,
    UpstreamError,
)
from farthing.paywall.facilitator import (
    Facilitator,
    LocalFacilitator,
    ResolvingFacilitator,
    Supported,
)
from farthing.paywall.facilitator_api import facilitator_app
from farthing.paywall.middleware import PaywallMiddleware, PaywallOptions
from farthing.paywall.preview import split_preview
from farthing.paywall.pricing import Quote, parse_price
from farthing.paywall.remote import RemoteFacilitator
from farthing.paywall.routes import PaidRoute, PriceRequest
from farthing.paywall.store import PaymentKey, PaymentRecord, PaymentState, PaymentStore
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
