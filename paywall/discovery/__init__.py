"""Discovery: the ``bazaar`` extension a 402 declares, ``/.well-known/x402``,
and the facilitator's catalog of what it has seen settled or verified.
"""

__all__: list[str] = []
