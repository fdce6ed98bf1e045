"""x402 ``exact``: one EIP-3009 ``transferWithAuthorization`` per payment.

``terms`` holds the checks on a payment that need no chain; the signing is
the wallet's (``farthing.wallet.eip3009``), verify and settle the local
facilitator's.
"""

__all__: list[str] = []
