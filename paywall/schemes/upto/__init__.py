"""x402 ``upto``: the payer signs a ceiling, the seller settles what was used, in one transaction.

``contract`` (Permit2 and the x402UptoPermit2Proxy: addresses, calls,
errors, placement on dev chains) is the chain side; ``permit`` the signed
ceiling (the Permit2 witness transfer, its digest and signature); ``types``
the scheme's names and codes; ``wire`` the requirements, the payment and
both gas-sponsoring extensions; ``checks`` what needs no chain; ``client``
the payer's part (sign a ceiling, approve Permit2 directly or by a sponsored
permit or transaction); ``facilitator`` verify and settle (settle-time
verification against the signed ceiling, zero settlement, each permit once);
``settlement`` what the chain shows of a permit (unused, or which settlement
spent it, moving how much), for resolving a seller's open payment.
The seller's HTTP side is ``farthing.paywall.edge.upto``.
"""

__all__: list[str] = []
