"""Helpers for the smart-account payer tests: our account factory, EIP-7702 delegation, hostile wallets.

The hostile contracts are a few bytes of EVM written at an address on the dev
chain (they are the attacker's, so not ours to compile): ``YES_WALLET``
answers the ERC-1271 magic value to any call, ``GAS_BURNER`` loops until its
gas runs out, ``COUNTING_FACTORY`` increments its storage slot 0 and deploys
nothing, ``REFUSING_WALLET`` returns nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

from eth_account import Account

from farthing.contracts import load_artifact
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS, place_code
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    deploy_account,
    deploy_account_factory,
)

# PUSH4 0x1626ba7e, PUSH1 224, SHL, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN
YES_WALLET: Final = bytes.fromhex("631626ba7e60e01b60005260206000f3")
# JUMPDEST, PUSH1 0, JUMP: forever
GAS_BURNER: Final = bytes.fromhex("5b600056")
# slot0 += 1, STOP
COUNTING_FACTORY: Final = bytes.fromhex("600160005401600055" + "00")
# RETURN(0, 0)
REFUSING_WALLET: Final = bytes.fromhex("60006000f3")


def place_multicall(chain: Chain) -> None:
    place_code(
        chain,
        {MULTICALL3_ADDRESS: bytes.fromhex(load_artifact("Multicall3").deployed_bytecode[2:])},
        what="Multicall3",
    )


def contract_at(chain: Chain, code: bytes) -> str:
    """A fresh address with ``code`` written at it."""
    address = LocalSigner.generate().address
    chain.set_code(address, code)
    return address


@dataclass
class Accounts:
    """A factory on the chain and a way to make accounts from it."""

    chain: Chain
    factory: str
    sender: LocalSigner

    def new(self, *, deployed: bool) -> SmartAccountSigner:
        owner = LocalSigner.generate()
        salt = os.urandom(32)
        if deployed:
            deploy_account(self.chain, self.factory, owner.address, salt, sender=self.sender)
        return SmartAccountSigner.on_chain(self.chain, owner, factory=self.factory, salt=salt)


def accounts_on(chain: Chain, sender: LocalSigner) -> Accounts:
    place_multicall(chain)
    return Accounts(chain, deploy_account_factory(chain, sender=sender), sender)


def delegate_7702(chain: Chain, eoa: LocalSigner, delegate: str, *, sponsor: LocalSigner) -> None:
    """Send an EIP-7702 (type 4) transaction: ``eoa``'s code becomes 0xef0100 || ``delegate``."""
    w3 = chain.w3
    authorization = Account.sign_authorization(
        {
            "chainId": chain.chain_id,
            "address": delegate,
            "nonce": w3.eth.get_transaction_count(eoa.address),
        },
        eoa.private_key.get_secret_value(),
    )
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    tx: dict[str, Any] = {
        "type": 4,
        "chainId": chain.chain_id,
        "nonce": w3.eth.get_transaction_count(sponsor.address, "pending"),
        "to": sponsor.address,
        "value": 0,
        "data": b"",
        "gas": 100_000,
        "maxFeePerGas": 2 * base_fee + 10**9,
        "maxPriorityFeePerGas": 10**9,
        "authorizationList": [authorization],
    }
    tx_hash = w3.eth.send_raw_transaction(sponsor.sign_transaction(tx))
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    assert int(receipt["status"]) == 1
    code = chain.code_at(eoa.address)
    assert code == b"\xef\x01\x00" + bytes.fromhex(delegate[2:]), code.hex()
