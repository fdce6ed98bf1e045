"""A person signs in with a wallet in real Chromium, accepts a job, delivers, and sees the payment.

``farthing.jobs.server`` runs under a real uvicorn on 127.0.0.1 (its public
URL, which sign-in messages name) over a
:class:`JobService` on the memory chain (our escrow, real SQLite books).
Playwright drives Debian's chromium. The only stand-in is the wallet
extension: an init script puts an EIP-1193 ``window.ethereum`` in the page
whose ``personal_sign`` is answered by a real key (eth-account) held by the
test. The agent's side runs in the test through the service (the scripted
reviewer accepts, the hold is captured), taking the server's step lock so
the in-process chain sees one step at a time; the page, which polls its job,
shows what was paid. Screenshots land in the test's temp folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from farthing.jobs import JobState
from farthing.jobs.server import create_app
from farthing.ledger import LedgerDatabase
from farthing.wallet.chain import MemoryChain
from tests.jobs.conftest import Env, make_env, serve_at

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
FAKE_WALLET_EXTENSION = """
window.ethereum = {
  isFakeWalletExtension: true,
  request: function (args) {
    return window.__fakeWallet(args.method, args.params || []).then(function (answer) {
      if (answer && answer.fakeWalletError) {
        var error = new Error(answer.message);
        error.code = answer.fakeWalletError;
        throw error;
      }
      return answer;
    });
  }
};
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


def _wallet_context(browser: Any, account: LocalAccount, asked: list[str]) -> Any:
    """A fresh browser profile whose wallet extension holds ``account``'s real key."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})

    def wallet(source: Any, method: str, params: list[Any]) -> Any:
        asked.append(method)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [account.address]
        if method == "personal_sign":
            message, address = params
            if address.lower() != account.address.lower():
                return {"fakeWalletError": 4100, "message": "Unknown account."}
            signed = Account.sign_message(encode_defunct(hexstr=message), account.key)
            return "0x" + signed.signature.hex()
        return {"fakeWalletError": 4200, "message": f"The fake wallet does not do {method}."}

    context.expose_binding("__fakeWallet", wallet)
    context.add_init_script(FAKE_WALLET_EXTENSION)
    return context


def test_a_person_accepts_delivers_and_sees_the_payment(
    browser: Any, memory_chain: MemoryChain, sqlite_database: LedgerDatabase, tmp_path: Path
) -> None:
    env: Env = make_env(memory_chain, sqlite_database)
    posted = env.service.post(
        title="Translate a paragraph into Hindi",
        specification="Translate the paragraph about farthings into Hindi.",
        criteria="complete translation",
        price="500 INR",
        rate="0.0119",
        deadline=env.deadline(3_600),
    )
    assert posted.ok and posted.job is not None, posted.message
    job_id = posted.job.id
    worker: LocalAccount = Account.create()
    env.workers.append(worker.address)
    apps: list[Any] = []

    def make_app(url: str) -> Any:
        apps.append(create_app(env.service, public_url=url))
        return apps[0]

    asked: list[str] = []

    with serve_at(make_app) as url:
        lock = apps[0].state.step_lock
        context = _wallet_context(browser, worker, asked)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        # 1. The open jobs: the price in rupees and in USDC.
        assert page.goto(url + "/").status == 200
        assert page.get_by_text("500 INR").first.is_visible()
        assert page.get_by_text("5.95 USDC").first.is_visible()
        page.screenshot(path=tmp_path / "1-open-jobs.png", full_page=True)
        page.get_by_role("link", name="Translate a paragraph into Hindi").click()
        page.get_by_text("Sign in with your wallet to accept this job").wait_for()

        # 2. Sign in with the wallet: one personal_sign, no password.
        page.get_by_role("button", name="Sign in with your wallet").click()
        page.get_by_role("button", name="Accept this job").wait_for(timeout=30_000)
        assert page.locator("#jobs-address").inner_text() == worker.address
        assert asked.count("personal_sign") == 1
        page.screenshot(path=tmp_path / "2-signed-in.png", full_page=True)

        # 3. Accept: the agent's hold is placed in escrow.
        page.get_by_role("button", name="Accept this job").click()
        page.get_by_text("5.95 USDC is held in escrow for you").wait_for(timeout=60_000)
        with lock:
            job = env.service.get(job_id)
            assert job.state is JobState.ACCEPTED and job.worker == worker.address
            assert job.payment_info is not None
            assert env.escrow.payment_state(job.payment_info).capturable_amount == 5_950_000
            env.check()
        page.screenshot(path=tmp_path / "3-accepted.png", full_page=True)

        # 4. Deliver text.
        page.locator("#content").fill("पूरा अनुवाद: a complete translation")
        page.get_by_role("button", name="Deliver").click()
        page.get_by_text("Waiting for the agent's review").wait_for(timeout=30_000)
        assert env.service.get(job_id).state is JobState.DELIVERED
        page.screenshot(path=tmp_path / "4-delivered.png", full_page=True)

        # 5. The agent reviews (scripted: the criterion's words are there) and captures.
        with lock:
            reviewed = env.service.review(job_id)
            assert reviewed.ok, reviewed.message
            paid = env.service.get(job_id)
            assert paid.state is JobState.PAID and paid.captured == 5_950_000
            env.check()
        # The page polls its job (a locator wait: under the strict CSP never wait_for_function).
        page.locator("#paid").wait_for(timeout=30_000)
        assert page.locator("#captured").inner_text() == "5.95 USDC"
        assert page.get_by_text(paid.capture_txs[0]).is_visible()
        assert env.token.balance_of(worker.address) == 5_950_000
        page.screenshot(path=tmp_path / "5-paid.png", full_page=True)

        # 6. The home page lists it under "Your jobs", paid.
        page.goto(url + "/")
        assert page.locator("#my-jobs .state").first.inner_text() == "paid"
        assert page.get_by_text("No job is open right now").is_visible()
        assert not [e for e in errors if "Content Security Policy" in e], errors
        context.close()

        # 7. No wallet in the browser: one plain sentence, nothing signed.
        bare = browser.new_context()
        page = bare.new_page()
        page.goto(url + f"/jobs/{job_id}")
        page.get_by_role("button", name="Sign in with your wallet").click()
        page.get_by_text("No wallet was found in this browser").wait_for(timeout=10_000)
        bare.close()
