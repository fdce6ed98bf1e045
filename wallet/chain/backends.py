"""``open_chain``: a chain from a word (``"memory"``) or a JSON-RPC URL."""

from __future__ import annotations

from farthing.wallet.chain.base import Chain
from farthing.wallet.chain.rpc import RpcChain
from farthing.wallet.errors import ChainError

__all__ = ["open_chain"]


def open_chain(
    where: str = "memory", *, timeout_s: float = 5.0, receipt_timeout_s: float = 60.0
) -> Chain:
    """Open ``"memory"`` (in-process py-evm) or a JSON-RPC URL (``http(s)://…``)."""
    if where == "memory":
        # Imported here: py-evm and eth-tester cost half a second to import,
        # which a command talking to a node never needs.
        from farthing.wallet.chain.memory import MemoryChain

        return MemoryChain()
    if where.startswith(("http://", "https://")):
        return RpcChain(where, timeout_s=timeout_s, receipt_timeout_s=receipt_timeout_s)
    raise ChainError(f"not a chain: {where!r} (want 'memory' or an http(s):// RPC URL)")
