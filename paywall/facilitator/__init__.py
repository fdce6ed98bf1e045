"""The facilitator: verify a payment and settle it, for every scheme.

``seam`` (what any facilitator answers), ``local`` (in-process, dispatching
to the schemes), ``remote`` (one reached by URL), ``submit`` (the relayer's
transactions), ``scope`` (which tokens and payees it settles for), ``api``
and ``cli`` (``farthing facilitator serve``).
"""

__all__: list[str] = []
