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

The names are imported on first use (``farthing.lazy``): importing one
submodule does not load the whole paywall.
"""

from typing import TYPE_CHECKING

from farthing.lazy import lazy_exports

if TYPE_CHECKING:
    from farthing.paywall.edge.middleware import PaywallMiddleware as PaywallMiddleware
    from farthing.paywall.edge.middleware import PaywallOptions as PaywallOptions
    from farthing.paywall.edge.preview import split_preview as split_preview
    from farthing.paywall.edge.pricing import Quote as Quote
    from farthing.paywall.edge.pricing import parse_price as parse_price
    from farthing.paywall.edge.routes import PaidRoute as PaidRoute
    from farthing.paywall.edge.routes import PriceRequest as PriceRequest
    from farthing.paywall.errors import FacilitatorUnavailableError as FacilitatorUnavailableError
    from farthing.paywall.errors import PaymentStoreError as PaymentStoreError
    from farthing.paywall.errors import PaywallConfigError as PaywallConfigError
    from farthing.paywall.errors import PaywallError as PaywallError
    from farthing.paywall.errors import PriceError as PriceError
    from farthing.paywall.errors import UpstreamError as UpstreamError
    from farthing.paywall.facilitator.api import facilitator_app as facilitator_app
    from farthing.paywall.facilitator.local import Facilitator as Facilitator
    from farthing.paywall.facilitator.local import LocalFacilitator as LocalFacilitator
    from farthing.paywall.facilitator.local import ResolvingFacilitator as ResolvingFacilitator
    from farthing.paywall.facilitator.local import Supported as Supported
    from farthing.paywall.facilitator.remote import RemoteFacilitator as RemoteFacilitator
    from farthing.paywall.records.books import BookingResult as BookingResult
    from farthing.paywall.records.books import ChannelRevenueBook as ChannelRevenueBook
    from farthing.paywall.records.books import LedgerRevenueBook as LedgerRevenueBook
    from farthing.paywall.records.books import RevenueBook as RevenueBook
    from farthing.paywall.records.books import SettledPayment as SettledPayment
    from farthing.paywall.records.books import revenue_transfer_id as revenue_transfer_id
    from farthing.paywall.records.payments import PaymentKey as PaymentKey
    from farthing.paywall.records.payments import PaymentRecord as PaymentRecord
    from farthing.paywall.records.payments import PaymentState as PaymentState
    from farthing.paywall.records.store import PaymentStore as PaymentStore
    from farthing.paywall.schemes.batch_settlement.books import (
        ChannelBookkeeper as ChannelBookkeeper,
    )
    from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer as ChannelClaimer
    from farthing.paywall.schemes.batch_settlement.claims import ClaimReport as ClaimReport
    from farthing.paywall.schemes.batch_settlement.reconcile import ChannelBreak as ChannelBreak
    from farthing.paywall.schemes.batch_settlement.reconcile import (
        ChannelReconciliation as ChannelReconciliation,
    )
    from farthing.paywall.schemes.batch_settlement.reconcile import (
        reconcile_channel_books as reconcile_channel_books,
    )
    from farthing.paywall.schemes.batch_settlement.server import CHARGE_HEADER as CHARGE_HEADER
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions as ChannelOptions
    from farthing.paywall.schemes.batch_settlement.state import ChannelRecord as ChannelRecord
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore as ChannelStore
    from farthing.paywall.wire import PAYMENT_REQUIRED_HEADER as PAYMENT_REQUIRED_HEADER
    from farthing.paywall.wire import PAYMENT_RESPONSE_HEADER as PAYMENT_RESPONSE_HEADER
    from farthing.paywall.wire import PAYMENT_SIGNATURE_HEADER as PAYMENT_SIGNATURE_HEADER
    from farthing.paywall.wire import PaymentPayload as PaymentPayload
    from farthing.paywall.wire import PaymentRequired as PaymentRequired
    from farthing.paywall.wire import PaymentRequirements as PaymentRequirements
    from farthing.paywall.wire import SettleResult as SettleResult
    from farthing.paywall.wire import VerifyResult as VerifyResult
    from farthing.paywall.wire import decode_payment_signature as decode_payment_signature
    from farthing.paywall.wire import encode_payment_signature as encode_payment_signature

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
