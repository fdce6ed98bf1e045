"""A reader pays for an article in real Chromium, reads it again for free, and others still pay.

A real static site (tests/paywall/site, served with a strict
Content-Security-Policy) sits behind ``farthing paywall serve --config``, the
config written by ``farthing paywall init``. Playwright drives Debian's
chromium. The only stand-in is a fake of the wallet extension: an init script
puts an EIP-1193 ``window.ethereum`` in the page whose requests
(``eth_requestAccounts``, ``eth_chainId``, ``wallet_switchEthereumChain``,
``eth_signTypedData_v4``, ``personal_sign``) go to anvil, which signs for its
unlocked dev accounts. The test checks what the reader sees and what the
chain did; a screenshot of each state lands in the test's temp folder.

The same fake can decline a signature, claim another network and decline the
switch, or hold a wallet without enough USDC: each shows its one sentence and
nothing is paid. With anvil's mining stopped, a paywall whose settlement waits
past its receipt timeout answers 503, and the page retries the very same
payment (one signature, one settlement transaction) until it is settled.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.staticfiles import StaticFiles

from tests import zygote
from tests.conftest import cli_env
from tests.paywall.browser_wallets import FakeWallet, chromium, reader_with_ethereum
from tests.paywall.conftest import PRICE_ATOMIC as PRICE_ATOMIC_DEFAULT
from tests.paywall.conftest import ChainEnv, free_port, serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.anvil]

SITE = Path(__file__).parent / "site"
ARTICLE = "/posts/farthing.html"
PRICE_ATOMIC = 13_850  # 0.1 CNY at 0.1385 USDC per CNY
SITE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'"


def _strict_csp(app: Any) -> Any:
    async def with_csp(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def add(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", SITE_CSP.encode()),
                ]
            await send(message)

        await app(scope, receive, add)

    return with_csp


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def blog(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``farthing paywall init`` then ``serve --config`` in front of the static site."""
    folder = tmp_path_factory.mktemp("blog")
    relayer_key = chain_env.chain.dev_accounts()[5].private_key.get_secret_value()
    (folder / "relayer.key").write_text(relayer_key + "\n")
    (folder / "relayer.key").chmod(0o600)
    site = Starlette()
    site.mount("/", StaticFiles(directory=SITE, html=True))
    # Sign-in needs the site's configured address, so the port is chosen first.
    port = free_port()
    with serve_in_thread(_strict_csp(site)) as upstream:
        env = cli_env(folder / "data")
        init = zygote.run_process(
            [
                sys.executable, "-m", "farthing", "paywall", "init",
                "--output", str(folder / "farthing.toml"), "--upstream", upstream,
                "--pay-to", chain_env.merchant, "--rpc-url", chain_env.chain.rpc_url,
                "--token", chain_env.asset.address, "--path", "/posts/**",
                "--price", "0.1 CNY", "--rate", "CNY=0.1385",
                "--public-url", f"http://127.0.0.1:{port}",
            ],
            check=False, capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        process = zygote.spawn(
            [
                sys.executable, "-m", "farthing", "paywall", "serve", "--json",
                "--config", str(folder / "farthing.toml"), "--port", str(port),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"paywall serve did not start: {process.communicate(timeout=10)[1]}")
        try:
            yield str(json.loads(line)["url"])
        finally:
            process.terminate()
            process.communicate(timeout=15)


def _reader(
    browser: Any,
    chain_env: ChainEnv,
    account: str | None,
    *,
    refuse: frozenset[str] = frozenset(),
    chain_id: str | None = None,
    asked: list[str] | None = None,
) -> Any:
    """A fresh browser profile, with the fake wallet extension holding ``account``.

    ``refuse`` names the methods its user declines; ``chain_id`` is the network
    it claims to be on instead of anvil's; ``asked`` collects every method called.
    """
    if account is None:
        return reader_with_ethereum(browser, chain_env, None)
    wallet = FakeWallet(account, refuse=refuse, chain_id=chain_id)
    if asked is not None:
        wallet.asked = asked
    return reader_with_ethereum(browser, chain_env, wallet)


def test_a_reader_pays_in_the_browser_and_reads_again_without_paying(
    browser: Any, blog: str, chain_env: ChainEnv, tmp_path: Path
) -> None:
    accounts = [a.address for a in chain_env.chain.dev_accounts()]
    buyer, stranger = accounts[1], accounts[2]
    for reader in (buyer, stranger):
        assert chain_env.token.mint(reader, 1_000_000, sender=chain_env.owner).ok
    url = blog + ARTICLE
    balance = chain_env.token.balance_of

    # 1. The 402 page: the site around a preview, the pay box, nothing paid for.
    first = _reader(browser, chain_env, buyer)
    page = first.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(url)
    assert response is not None and response.status == 402
    assert response.text().lower().count("<!doctype") == 1
    assert page.locator(".site-nav").is_visible()  # the site's navigation stays
    assert page.get_by_text("a quarter of a penny").is_visible()
    assert "PAID-PART" not in page.content()
    assert page.get_by_text("0.1 CNY").is_visible()
    page.screenshot(path=tmp_path / "1-preview.png", full_page=True)
    assert page.get_by_text("USDC on the local development chain").is_visible()
    page.screenshot(path=tmp_path / "1-preview.png", full_page=True)

    # 2. Pay: the whole article, and the price moved on the chain.
    before = balance(buyer), balance(chain_env.merchant)
    page.get_by_role("button", name="Pay with wallet").click()
    page.get_by_text("its name comes from the Old English").wait_for(timeout=60_000)
    assert page.content().count("PAID-PART") == 3
    assert balance(buyer) == before[0] - PRICE_ATOMIC
    assert balance(chain_env.merchant) == before[1] + PRICE_ATOMIC
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.screenshot(path=tmp_path / "2-paid.png", full_page=True)

    # 3. Reload: the receipt cookie reads it again, nothing is paid.
    again = page.reload()
    assert again is not None and again.status == 200
    assert page.content().count("PAID-PART") == 3
    assert balance(buyer) == before[0] - PRICE_ATOMIC
    page.screenshot(path=tmp_path / "3-reload.png", full_page=True)
    first.close()

    # 4. Another browser, the same wallet: sign in with x402 sign-in-with-x, read for free.
    second = _reader(browser, chain_env, buyer)
    page = second.new_page()
    sign_ins: list[str] = []
    page.on("request", lambda r: sign_ins.extend(filter(None, [r.headers.get("sign-in-with-x")])))
    assert page.goto(url).status == 402
    page.get_by_role("button", name="Already paid? Sign in with your wallet").click()
    page.get_by_text("its name comes from the Old English").wait_for(timeout=30_000)
    # The page sends the address in its EIP-55 form, as the x402 spec asks.
    assert json.loads(base64.b64decode(sign_ins[-1]))["address"] == buyer
    assert balance(buyer) == before[0] - PRICE_ATOMIC
    page.screenshot(path=tmp_path / "4-signed-in.png", full_page=True)
    second.close()

    # 5. A different wallet is asked to pay.
    third = _reader(browser, chain_env, stranger)
    page = third.new_page()
    page.goto(url)
    page.get_by_role("button", name="Already paid? Sign in with your wallet").click()
    status = page.locator("#farthing-status")
    status.get_by_text("This wallet has not bought this article yet").wait_for(timeout=30_000)
    # The sentence sits under the buttons, so it points up to the one to press.
    assert status.inner_text() == (
        "This wallet has not bought this article yet: press Pay with wallet above to read it."
    )
    pay_box = page.get_by_role("button", name="Pay with wallet").bounding_box()
    status_box = status.bounding_box()
    assert pay_box is not None and status_box is not None and status_box["y"] > pay_box["y"]
    assert "PAID-PART" not in page.content()
    assert balance(stranger) == 1_000_000
    page.screenshot(path=tmp_path / "5-stranger.png", full_page=True)
    third.close()

    # 6. No wallet at all: one plain sentence.
    fourth = _reader(browser, chain_env, None)
    page = fourth.new_page()
    page.goto(url)
    page.get_by_role("button", name="Pay with wallet").click()
    page.get_by_text("No wallet was found in this browser").wait_for(timeout=10_000)
    page.screenshot(path=tmp_path / "6-no-wallet.png", full_page=True)
    fourth.close()


def test_each_failure_reads_as_one_sentence_and_pays_nothing(
    browser: Any, blog: str, chain_env: ChainEnv, tmp_path: Path
) -> None:
    accounts = [a.address for a in chain_env.chain.dev_accounts()]
    reader, poor = accounts[3], accounts[4]
    assert chain_env.token.mint(reader, 1_000_000, sender=chain_env.owner).ok
    assert chain_env.token.balance_of(poor) < PRICE_ATOMIC
    url = blog + ARTICLE
    balance = chain_env.token.balance_of
    merchant = balance(chain_env.merchant)

    def attempt(name: str, account: str, sentence: str, **wallet: Any) -> list[str]:
        asked: list[str] = []
        context = _reader(browser, chain_env, account, asked=asked, **wallet)
        page = context.new_page()
        page.goto(url)
        page.get_by_role("button", name="Pay with wallet").click()
        status = page.locator("#farthing-status")
        status.get_by_text(sentence).wait_for(timeout=30_000)
        assert status.inner_text().strip() == sentence  # one sentence, nothing else
        assert "PAID-PART" not in page.content()
        assert page.get_by_role("button", name="Pay with wallet").is_enabled()  # try again
        page.screenshot(path=tmp_path / f"{name}.png", full_page=True)
        context.close()
        return asked

    asked = attempt(
        "1-signature-refused",
        reader,
        "You declined to sign the payment, so nothing was paid.",
        refuse=frozenset({"eth_signTypedData_v4"}),
    )
    assert "eth_signTypedData_v4" in asked
    asked = attempt(
        "2-wrong-network",
        reader,
        "Your wallet is on the wrong network: switch it to the local development chain"
        " and try again.",
        chain_id="0x1",
        refuse=frozenset({"wallet_switchEthereumChain"}),
    )
    assert "wallet_switchEthereumChain" in asked and "eth_signTypedData_v4" not in asked
    attempt(
        "3-not-enough-balance",
        poor,
        "Your wallet does not hold enough USDC to pay for this article.",
    )
    assert balance(reader) == 1_000_000 and balance(poor) < PRICE_ATOMIC
    assert balance(chain_env.merchant) == merchant  # nothing was paid by anyone


def test_a_settlement_still_pending_is_retried_with_the_same_payment(
    browser: Any, chain_env: ChainEnv, tmp_path: Path
) -> None:
    """Anvil stops mining, so the paywall's settlement waits past its receipt timeout (503)."""
    from pydantic import SecretStr

    from farthing.paywall import LocalFacilitator, PaymentStore
    from farthing.paywall.edge.receipts import Receipts
    from farthing.wallet.chain import RpcChain
    from tests.paywall.conftest import paywalled

    reader = chain_env.chain.dev_accounts()[6].address
    assert chain_env.token.mint(reader, 1_000_000, sender=chain_env.owner).ok
    chain = RpcChain(chain_env.chain.rpc_url or "", timeout_s=5.0, receipt_timeout_s=1.0)
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    app = paywalled(
        chain_env, store, facilitator=LocalFacilitator(chain, chain_env.relayer),
        receipts=Receipts(SecretStr("Pq4-Wm7xRk1Lt8Yz3Nc6Hd0Jf5Gv2Bs9Ea-Uo")),
    )  # fmt: skip
    relayer = chain_env.relayer.address
    sent_before = chain_env.chain.w3.eth.get_transaction_count(relayer)
    provider = chain_env.chain.w3.provider
    asked: list[str] = []
    payments: list[str] = []
    with serve_in_thread(app) as url:
        context = _reader(browser, chain_env, reader, asked=asked)
        page = context.new_page()
        page.on(
            "request", lambda r: payments.extend(filter(None, [r.headers.get("payment-signature")]))
        )
        page.goto(url + "/articles/farthing")
        provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
        try:
            page.get_by_role("button", name="Pay with wallet").click()
            # The 503 came back: the page says so, then asks again with the same payment.
            # A locator, not wait_for_function: its polling evaluates a string,
            # which the page's strict CSP (no unsafe-eval) refuses.
            page.locator("#farthing-status[data-state='pending']").wait_for()
            deadline = time.monotonic() + 30
            while len(payments) < 2 and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            status = page.locator("#farthing-status").inner_text()
            assert status.startswith("Your payment is being settled on the chain")
            page.screenshot(path=tmp_path / "pending.png", full_page=True)
        finally:
            provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
            provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        page.get_by_text("PAID-PART").first.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "settled.png", full_page=True)
        context.close()
    store.dispose()
    assert len(payments) >= 2 and len(set(payments)) == 1  # retried, never a second payment
    assert asked.count("eth_signTypedData_v4") == 1  # the reader was asked to sign once
    assert chain_env.chain.w3.eth.get_transaction_count(relayer) == sent_before + 1
    assert chain_env.token.balance_of(reader) == 1_000_000 - PRICE_ATOMIC_DEFAULT
