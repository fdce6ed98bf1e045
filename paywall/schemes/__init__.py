"""The x402 schemes, one package each: its wire, its client, server and facilitator parts, its contract.

``exact`` (one EIP-3009 transfer per payment), ``batch_settlement`` (a
deposit in an escrow, then cumulative vouchers) and ``auth_capture`` (an
escrowed authorization, captured on accepted work). A new scheme is a new
folder here. A scheme never imports another: what they share sits directly
in this package (``fields``: the wire's field readers and ``WireRefusal``;
``placement``: contract code on dev chains; ``reverts``: custom errors from
revert data; ``calldata``: a call encoded from its signature;
``typed_data``: EIP-712 type hashes, digests and checked signatures). See
``docs/architecture.md``.
"""

__all__: list[str] = []
