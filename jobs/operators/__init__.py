"""Who sends the escrow's ``authorize``, ``capture``, ``void`` and ``refund``.

``escrow`` (the seam, and the agent as its own operator) and
``facilitator`` (through an x402 ``auth-capture`` facilitator).
"""

__all__: list[str] = []
