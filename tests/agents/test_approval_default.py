"""An agent nobody configured asks a person before any payment above 0.10 USDC.

Run as a new user would: `farthing chain dev` (anvil), a fresh data directory
with a funded keystore, and a site on uvicorn whose own 402 asks 0.5 USDC for
each article, paid to an address nobody told the agent about. `farthing agent
run --budget 1` runs as a real process; a person answers its approval requests
with `farthing agent approvals approve|deny`, also real processes. Only the
approved payment is made. `farthing agent policy show` prints the threshold
and `policy set` changes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from farthing.agents.blog import paywalled_blog
from farthing.paywall import LocalFacilitator, PaymentStore
from farthing.wallet.chain import RpcChain
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin
from tests import zygote
from tests.agents.conftest import Site
from tests.agents.test_cli import TASK
from tests.conftest import TEST_PASSPHRASE, DevChainProcess, cli_env
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anvil

DEAR_ATOMIC = 500_000  # 0.5 USDC an article
WAIT_S = 300  # a loaded machine starts each command slowly


@pytest.fixture
def dear_site(dev_chain: DevChainProcess, tmp_path: Path) -> Iterator[Site]:
    """The blog at 0.5 USDC an article, and an agent wallet holding 1 USDC."""
    data_dir = dev_chain.data_dir
    deployment = load_dev_deployment(data_dir)
    chain = RpcChain(deployment.rpc_url, timeout_s=5.0, receipt_timeout_s=30.0)
    agent = LocalSigner.generate()
    settings = WalletSettings(data_dir=data_dir, scrypt_n=2**12)
    write_keystore(settings, "default", agent, SecretStr(TEST_PASSPHRASE))
    minter = deployment.minter_signer()
    assert Stablecoin(chain, deployment.token).mint(agent.address, 1_000_000, sender=minter).ok
    merchant = LocalSigner.generate().address  # nobody told the agent about this payee
    store = PaymentStore.sqlite(tmp_path / "dear-paywall.sqlite")
    blog = paywalled_blog(
        facilitator=LocalFacilitator(chain, chain.dev_accounts()[3].signer()),
        store=store,
        pay_to=merchant,
        asset=deployment.token,
        price="0.5 USDC",
    )
    with serve_in_thread(blog) as url:
        yield Site(
            data_dir, chain, deployment.token, minter, agent, merchant, url, cli_env(data_dir)
        )
    store.dispose()
    chain.close()


def test_the_default_policy_waits_for_a_person_above_ten_cents(dear_site: Site) -> None:
    site = dear_site
    shown = site.farthing("agent", "policy", "show", "--json")
    assert shown.code == 0, shown.stderr
    assert shown.json()["approval_above_atomic"] == 100_000
    human = site.farthing("agent", "policy", "show")
    assert "approval above" in human.stdout and "0.1 USDC" in human.stdout

    argv = [sys.executable, "-m", "farthing", "agent", "run", "--task", TASK, "--budget", "1"]
    run = zygote.spawn(
        [*argv, "--url", f"{site.url}/", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=site.env,
    )
    decided: dict[int, str] = {}
    deadline = time.monotonic() + WAIT_S
    try:
        while run.poll() is None and time.monotonic() < deadline:
            listed = site.farthing("agent", "approvals", "list", "--json")
            assert listed.code == 0, listed.stderr
            for request in listed.json()["approvals"]:
                assert request["amount_atomic"] == DEAR_ATOMIC
                assert request["pay_to"].lower() == site.merchant.lower()
                # A person approves the first payment and refuses the rest.
                verb = "approve" if not decided else "deny"
                answer = site.farthing("agent", "approvals", verb, str(request["id"]))
                assert answer.code == 0, answer.stderr
                decided[request["id"]] = verb
            time.sleep(0.5)
        out, err = run.communicate(timeout=WAIT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert decided, f"the agent paid without asking: {report}"
    assert list(decided.values()) == ["approve"] + ["deny"] * (len(decided) - 1)
    assert report["payments"] == 1 and report["spent_atomic"] == DEAR_ATOMIC
    first = min(decided)
    # The run said, where a person reads it, what it waits for and how to answer.
    assert f"farthing agent approvals approve {first}" in err
    reasons = [item["reason"] for item in report["skipped_items"]]
    assert len(decided) == 1 or any("approval" in r for r in reasons), reasons
    status = site.farthing("agent", "status", "--json")
    assert status.json()["balance_atomic"] == 1_000_000 - DEAR_ATOMIC


def test_policy_set_changes_the_threshold_and_none_never_asks(dear_site: Site) -> None:
    site = dear_site
    raised = site.farthing("agent", "policy", "set", "--approval-above", "0.6", "--json")
    assert raised.code == 0, raised.stderr
    assert raised.json()["approval_above_atomic"] == 600_000
    paid = site.farthing(
        "agent", "fetch", f"{site.url}/posts/quarter-penny", "--max-price", "0.5", "--json"
    )
    assert paid.code == 0, paid.stderr
    assert paid.json()["outcome"] == "paid"

    cleared = site.farthing("agent", "policy", "set", "--approval-above", "none", "--json")
    assert cleared.json()["approval_above_atomic"] is None
    shown = site.farthing("agent", "policy", "show")
    assert "never asks" in shown.stdout
