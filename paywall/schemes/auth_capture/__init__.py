"""x402 ``auth-capture``: an escrowed authorization, captured, voided or refunded by an operator.

``contract`` (the escrow binding and placement), ``types`` and
``wire`` (codes, requirements ``extra``, payloads), ``checks`` (what needs no
chain), ``consent`` (the client's and the server's signatures) and
``facilitator`` (verify and settle with this facilitator as the operator).
``payment`` holds the payment's terms (``PaymentInfo``) and the payer's
signature. ``/settle`` answers with :class:`farthing.paywall.wire.SettleResult`
in every scheme; ``AuthCaptureSettleResult`` is its documented name here.
"""

from farthing.paywall.wire import SettleResult

__all__ = ["AuthCaptureSettleResult"]

AuthCaptureSettleResult = SettleResult
