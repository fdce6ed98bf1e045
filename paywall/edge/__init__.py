"""The seller's HTTP edge: ``PaywallMiddleware`` and what it is made of.

``paths`` (one canonical path per request), ``routes`` and ``pricing`` (what
costs what), ``preview`` and ``metadata`` (the free part), ``page`` (the
browser's 402 page), ``receipts`` and ``sign_in``/``nonces`` (reading again
for free), ``websocket`` (refused), ``middleware`` (the ASGI app).
"""

__all__: list[str] = []
