"""The browser pay page pays from a smart account: the wallet's ERC-1271 or ERC-6492 signature settles.

A real paywall on uvicorn, anvil with our token, Multicall3 and account
factory, and Debian's chromium under Playwright. The injected provider is a
fake smart-wallet extension: its account is a SmartAccount's address and it
answers ``eth_signTypedData_v4`` as such wallets do, with the owner's
signature the account checks (ERC-1271), wrapped in ERC-6492 while the
account is not deployed. The page sends what the wallet returned, unchanged;
the article is shown and the price moves from the account to the merchant
(deploying the counterfactual account in the same transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall import PaymentStore
from farthing.wallet.smart_account import SmartAccountSigner
from tests.paywall.browser_wallets import FakeWallet, chromium, reader_with_ethereum
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, paywalled, serve_in_thread
from tests.paywall.smart_accounts import Accounts, accounts_on

pytestmark = [pytest.mark.browser, pytest.mark.anvil]

PAID = "PAID-PART: collectors still trade them"
FUNDS = 1_000_000
_UINTS = ("value", "validAfter", "validBefore")


@dataclass
class SmartWalletExtension(FakeWallet):
    """A fake smart-wallet extension: the account is a contract, the owner's key signs for it."""

    signer: SmartAccountSigner | None = None

    def answer(self, rpc: httpx.Client, method: str, params: list[Any]) -> Any:
        if method != "eth_signTypedData_v4":
            return super().answer(rpc, method, params)
        assert self.signer is not None and params[0].lower() == self.account.lower()
        self.asked.append(method)
        typed = json.loads(params[1])
        self.typed_data.append(typed)
        message = {k: int(v) if k in _UINTS else v for k, v in typed["message"].items()}
        raw = self.signer.sign_typed_data(
            typed["domain"], typed["types"], typed["primaryType"], message
        )
        return "0x" + raw.hex()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def accounts(chain_env: ChainEnv) -> Accounts:
    return accounts_on(chain_env.chain, chain_env.owner)


@pytest.mark.parametrize("deployed", [True, False], ids=["erc1271", "erc6492"])
def test_a_smart_wallet_pays_from_the_page(
    browser: Any, chain_env: ChainEnv, accounts: Accounts, tmp_path: Path, deployed: bool
) -> None:
    account = accounts.new(deployed=deployed)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok
    wallet = SmartWalletExtension(account.address, signer=account)
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    try:
        with serve_in_thread(paywalled(chain_env, store)) as url:
            context = reader_with_ethereum(browser, chain_env, wallet)
            page = context.new_page()
            assert page.goto(url + "/articles/coins").status == 402
            page.get_by_role("button", name="Pay with wallet").click()
            page.get_by_text(PAID).first.wait_for(timeout=60_000)
            page.screenshot(path=tmp_path / "paid.png", full_page=True)
            context.close()
    finally:
        store.dispose()
    [signed] = wallet.typed_data
    assert signed["message"]["from"].lower() == account.address.lower()
    assert chain_env.chain.code_at(account.address)
    assert chain_env.token.balance_of(account.address) == FUNDS - PRICE_ATOMIC
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
