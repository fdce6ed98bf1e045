"""The official x402 JavaScript client (``@x402/fetch`` with ``@x402/evm``, in a real Node process) pays our paywall.

The paywall runs under a real uvicorn on 127.0.0.1 in front of anvil; the
payer's key reaches Node on stdin. The Node script (``pay_with_x402_fetch.mjs``)
uses only the SDK's public API plus a spend-control entry for our token. The
content must arrive with a successful ``PAYMENT-RESPONSE`` and the balances
must move by the price.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from farthing.paywall import PaymentStore
from tests import zygote
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, paywalled, serve_in_thread

pytestmark = pytest.mark.anvil

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("pay_with_x402_fetch.mjs")


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (REPO / "node_modules" / "@x402" / "fetch").is_dir():
        return "run `npm ci` to install @x402/fetch"
    return None


@pytest.mark.skipif(_node_missing() is not None, reason=str(_node_missing()))
def test_x402_fetch_in_node_pays_our_middleware(chain_env: ChainEnv, store: PaymentStore) -> None:
    payer = chain_env.new_payer()
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    with serve_in_thread(paywalled(chain_env, store)) as url:
        proc = zygote.run_process(
            [
                "node",
                str(SCRIPT),
                f"{url}/articles/farthing",
                chain_env.chain.network,
                chain_env.asset.address,
            ],
            input=payer.private_key.get_secret_value(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, result
    assert result["body"].count("PAID-PART") == 2
    assert result["paymentResponse"]["success"] is True
    assert result["paymentResponse"]["payer"] == payer.address
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
