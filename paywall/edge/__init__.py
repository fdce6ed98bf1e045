"""The seller's HTTP edge: ``PaywallMiddleware`` and what it is made of.

``middleware`` (the ASGI app and its options) sends each request through
``request`` (one canonical request; ``paths`` makes its path), ``routes`` and
``pricing`` (what costs what), ``challenge`` (the terms and the 402, with
``preview`` and ``metadata`` for the free part and ``page`` for the browser's
402 page), ``paid`` (the exact scheme's paid path: verify, handler, settle)
or ``channel`` (a batch-settlement payment), and ``owned`` (reading again for
free: ``receipts`` and ``sign_in``/``nonces``). ``asgi`` holds the plumbing
(buffering, sending, headers); ``websocket`` refuses paid streams.
"""

__all__: list[str] = []
