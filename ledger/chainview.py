"""The real ``ChainView``: reconciliation's questions answered by a Farthing chain.

Any backend of ``farthing.wallet.chain`` works (the in-process memory chain,
anvil, or a JSON-RPC URL), which is what lets the same reconciliation run in
tests, in the demo and against Base.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from farthing.ledger.reconcile import TokenTransferEvent
from farthing.wallet.chain import Chain
from farthing.wallet.money import Asset
from farthing.wallet.token import AuthorizationOutcome, Stablecoin, read_asset

__all__ = ["TokenChainView"]


class TokenChainView:
    """What one EIP-3009 token on one chain says about our payments."""

    def __init__(self, chain: Chain, token: Asset | str) -> None:
        self.chain = chain
        self.asset = token if isinstance(token, Asset) else read_asset(chain, token)
        self._token = Stablecoin(chain, self.asset)

    @property
    def network(self) -> str:
        return self.chain.network

    @property
    def token_address(self) -> str:
        return self.asset.address

    def head_block(self) -> int:
        return self.chain.block_number()

    def token_transfers(
        self,
        *,
        token_address: str,
        addresses: Collection[str],
        from_block: int,
        to_block: int,
    ) -> Sequence[TokenTransferEvent]:
        if token_address.lower() != self.asset.address.lower():
            raise ValueError(f"this view reads {self.asset.address}, not {token_address}")
        if not addresses:
            return []
        events = self.chain.transfer_events(
            self.asset.address, from_block, to_block, addresses=sorted(addresses)
        )
        return [
            TokenTransferEvent(
                tx_hash=e.tx_hash,
                log_index=e.log_index,
                from_address=e.from_address,
                to_address=e.to,
                value=e.value,
                block_number=e.block_number,
            )
            for e in events
        ]

    def authorization_state(self, *, authorizer: str, nonce: str) -> bool:
        return self._token.authorization_state(authorizer, nonce)

    def authorization_outcome(
        self, *, authorizer: str, nonce: str, from_block: int = 0, to_block: int | None = None
    ) -> AuthorizationOutcome:
        return self._token.authorization_outcome(
            authorizer, nonce, from_block=from_block, to_block=to_block
        )
