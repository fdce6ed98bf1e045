"""The Python quickstart in docs/agents.md runs as written and buys an x402 URL.

The block is read out of the doc itself, saved as a file and run with the
project's interpreter as a user would (`python quickstart.py URL`), on a fresh
data dir: a real `farthing chain dev`, a wallet made and funded with the
CLI, and a real paywall (uvicorn on 127.0.0.1, settling on that chain). The
wallet's balance and the seller's are then read from the chain.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from farthing.paywall import LocalFacilitator, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, read_asset
from tests import zygote
from tests.conftest import DevChainProcess, cli_env, run_farthing
from tests.paywall.conftest import PRICE_ATOMIC, default_routes, inner_app, serve_in_thread

pytestmark = pytest.mark.anvil

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


def quickstart_block() -> str:
    text = DOC.read_text()
    section = text[text.index("### Quickstart in Python") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "docs/agents.md has no Python block under its quickstart"
    return found.group(1)


def test_the_quickstart_buys_an_article_on_a_fresh_data_dir(
    dev_chain: DevChainProcess, tmp_path: Path
) -> None:
    env = cli_env(dev_chain.data_dir)
    assert run_farthing(["wallet", "new", "--json"], env=env).code == 0
    funded = run_farthing(["wallet", "fund", "1", "--json"], env=env)
    assert funded.code == 0, funded.stderr
    buyer = run_farthing(["wallet", "show", "--json"], env=env).json()["address"]

    chain = RpcChain(dev_chain.rpc_url)
    asset = read_asset(chain, dev_chain.info["token"]["address"])
    relayer = LocalSigner(dev_chain.info["accounts"][3]["private_key"])
    merchant = LocalSigner.generate().address
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    app = PaywallMiddleware(
        inner_app(),
        options=PaywallOptions(
            routes=default_routes(),
            facilitator=LocalFacilitator(chain, relayer),
            store=store,
            pay_to=merchant,
            asset=asset,
        ),
    )
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart_block())
    try:
        with serve_in_thread(app) as base:
            done = zygote.run_process(
                [sys.executable, str(script), f"{base}/articles/farthing"],
                capture_output=True,
                text=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"200 paid 0.01 USDC to {merchant}"), done.stdout
        token = Stablecoin(chain, asset)
        assert token.balance_of(merchant) == PRICE_ATOMIC
        assert token.balance_of(buyer) == 1_000_000 - PRICE_ATOMIC
    finally:
        store.dispose()
        chain.close()
