"""x402 ``auth-capture``: an escrowed authorization, captured, voided or refunded by an operator.

``contract`` (payment info, hashes, the escrow binding), ``types`` and
``wire`` (codes, requirements ``extra``, payloads), ``checks`` (what needs no
chain), ``consent`` (the client's and the server's signatures) and
``facilitator`` (verify and settle with this facilitator as the operator).
"""

__all__: list[str] = []
