"""Exceptions raised by ``farthing.paywall``.

::

    FarthingError                           (farthing.errors)
    └── PaywallError
        ├── PaywallConfigError              a route, price, rate or option that cannot work
        │   └── PriceError                  a price that is not an exact, positive amount
        ├── FacilitatorUnavailableError     the chain or the remote facilitator did not answer
        ├── PaymentStoreError               the paywall's payment database failed
        └── UpstreamError                   the reverse proxy's upstream did not answer

Payment outcomes are values, never exceptions: a refused payment is a
``VerifyResult(valid=False, reason="nonce_already_used")`` and a failed
settlement a ``SettleResult(success=False, reason=...)``. The middleware turns
``FacilitatorUnavailableError`` into a 503 and never sends paid content after it.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = [
    "FacilitatorUnavailableError",
    "PaymentStoreError",
    "PaywallConfigError",
    "PaywallError",
    "PriceError",
    "UpstreamError",
]


class PaywallError(FarthingError):
    """Root of every error raised deliberately by ``farthing.paywall``."""


class PaywallConfigError(PaywallError, ValueError):
    """The paywall's configuration cannot work; the message says which part."""


class PriceError(PaywallConfigError):
    """A price is malformed, not positive, or does not convert to whole atomic units."""


class FacilitatorUnavailableError(PaywallError):
    """The chain RPC or the remote facilitator did not answer in time.

    The middleware answers 503: whether the payment is good is unknown, so the
    handler's result is never sent and nothing is booked.
    """


class PaymentStoreError(PaywallError):
    """The paywall's payment database could not be reached or written."""


class UpstreamError(PaywallError):
    """The reverse proxy's upstream server could not be reached."""
