"""A channel escrow address with no escrow behind it is a ChainError the caller refuses, never a crash.

Reads go to a real in-process chain: an address with no code (which answers
an empty success) and our own stablecoin (a contract of another shape).
Before, the empty answer reached the ABI decoder and its error became a 500
in the facilitator's verify.
"""

from __future__ import annotations

import pytest

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.wallet.chain import MemoryChain
from farthing.wallet.errors import ChainError, WalletError
from farthing.wallet.signer import LocalSigner


def test_no_code_at_the_escrow_address_is_a_chain_error(memory_chain: MemoryChain) -> None:
    nowhere = ChannelEscrow(memory_chain, LocalSigner.generate().address)
    with pytest.raises(ChainError, match="is it deployed here"):
        nowhere.snapshot(b"\x01" * 32)
    with pytest.raises(WalletError):
        nowhere.refund_nonce(b"\x01" * 32)
