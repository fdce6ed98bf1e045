"""x402 ``batch-settlement``: channels with a deposit in an escrow, paid by cumulative vouchers.

``vouchers`` (channel configs, ids, EIP-712 digests, signing) and
``contract`` (the escrow binding) are the chain side; ``types`` the x402
envelope, ``wire`` the codes and client payloads, ``redeem`` the server's
claim and settle payloads, ``extras`` the offer's and the response's
``extra``; ``server`` the paywall's path (offers,
vouchers, deposits, refunds) over ``state``, ``holds`` and ``refund_hold``;
``claims`` and ``claim_rows`` claim and settle; ``books`` and ``reconcile``
the merchant's books; ``facilitator`` verifies and settles; ``setup`` turns
command-line settings into ``ChannelOptions``.
"""

__all__: list[str] = []
