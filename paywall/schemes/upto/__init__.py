"""x402 ``upto``: the payer signs a ceiling, the seller settles what was used, in one transaction.

``contract`` (Permit2 and the x402UptoPermit2Proxy: addresses, calls,
errors, placement on dev chains) is the chain side.
"""

__all__: list[str] = []
