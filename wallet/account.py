"""``Wallet``: one signer holding one stablecoin on one chain.

This is the object agents and the demo use: balance, transfer, sign an
EIP-3009 authorization, and submit one, all through the chain interface, so the
same code runs on the in-process memory chain and over JSON-RPC.
"""

from __future__ import annotations

from dataclasses import dataclass

from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.eip3009 import (
    VALID_FOR_S_DEFAULT,
    SignedAuthorization,
    TokenDomain,
    build_authorization,
    sign_authorization,
)
from farthing.wallet.errors import AmountError
from farthing.wallet.money import Asset, Money
from farthing.wallet.signer import LocalSigner, TxSigner
from farthing.wallet.token import SignatureForm, Stablecoin

__all__ = ["Wallet"]


@dataclass(frozen=True, slots=True)
class Wallet:
    """A key that can sign for payments in ``asset`` on ``chain``."""

    signer: LocalSigner
    chain: Chain
    asset: Asset

    @property
    def address(self) -> str:
        return self.signer.address

    @property
    def token(self) -> Stablecoin:
        return Stablecoin(self.chain, self.asset)

    @property
    def domain(self) -> TokenDomain:
        return TokenDomain.for_asset(self.asset)

    def balance(self) -> Money:
        """The wallet's token balance, read from the chain."""
        return Money(self.token.balance_of(self.address), self.asset)

    def native_balance_wei(self) -> int:
        """The wallet's gas balance, in wei."""
        return self.chain.native_balance(self.address)

    def transfer(self, to: str, amount: int) -> TxResult:
        """Send ``amount`` atomic units to ``to``; this wallet pays the gas."""
        _check_positive(amount)
        return self.token.transfer(checksum(to), amount, sender=self.signer)

    def authorize(
        self, to: str, amount: int, *, valid_for_s: int = VALID_FOR_S_DEFAULT
    ) -> SignedAuthorization:
        """Sign an EIP-3009 TransferWithAuthorization paying ``amount`` to ``to``.

        Nothing is sent: whoever holds the result can submit it, once, before
        it expires. The valid window is measured on the chain's clock, which
        on the memory chain can run ahead of the wall clock.
        """
        _check_positive(amount)
        authorization = build_authorization(
            from_address=self.address,
            to=checksum(to),
            value=amount,
            valid_for_s=valid_for_s,
            now=self.chain.timestamp(),
        )
        return sign_authorization(self.signer, authorization, self.domain)

    def submit_authorization(
        self,
        signed: SignedAuthorization,
        *,
        sender: TxSigner | None = None,
        form: SignatureForm = "vrs",
    ) -> TxResult:
        """Submit a signed authorization; ``sender`` (default: this wallet) pays the gas."""
        return self.token.transfer_with_authorization(
            signed, sender=sender or self.signer, form=form
        )

    def send_native(self, to: str, wei: int) -> TxResult:
        """Send gas money (wei) to ``to``."""
        _check_positive(wei)
        return self.chain.send(Call(to=checksum(to), data=b"", value=wei), sender=self.signer)


def _check_positive(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise AmountError(f"amounts are ints of atomic units, got {type(amount).__name__}")
    if amount <= 0:
        raise AmountError(f"amount must be positive, got {amount}")
