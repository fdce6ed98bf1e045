"""``farthing paywall init`` writes a config that loads, and ``revenue`` reports what was paid.

The init command runs as a real process; its file is read back by the same
loader ``serve --config`` uses. Revenue is read from a real SQLite payment
store after a real settled payment on anvil through the middleware.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from farthing.paywall import PaymentStore
from farthing.paywall.site.config import load_config
from tests.conftest import cli_env, run_farthing
from tests.paywall.conftest import ChainEnv, asgi_client, challenge_of, paywalled, run, sign_for

PAY_TO = "0x" + "ab" * 20
TOKEN = "0x" + "cd" * 20


def test_init_writes_a_commented_config_that_serve_can_load(tmp_path: Path) -> None:
    out = tmp_path / "farthing.toml"
    args = [
        "paywall", "init", "--output", str(out), "--upstream", "http://127.0.0.1:4000",
        "--pay-to", PAY_TO, "--rpc-url", "http://127.0.0.1:8545", "--token", TOKEN,
    ]  # fmt: skip
    result = run_farthing(args, env=cli_env(tmp_path / "data"))
    assert result.code == 0, result.stderr
    config = load_config(out)
    assert config.upstream == "http://127.0.0.1:4000" and config.pay_to == PAY_TO
    assert config.routes[0].path == "/posts/**" and config.routes[0].price == "0.1 CNY"
    assert config.rates == {"CNY": "0.1385"} and config.key_file == tmp_path / "relayer.key"
    assert config.receipt_secret_file == tmp_path / "receipt.secret"
    assert (tmp_path / "receipt.secret").stat().st_mode & 0o077 == 0
    assert out.read_text().count("# ") > 10  # commented for a reader
    again = run_farthing(args, env=cli_env(tmp_path / "data"))
    assert again.code != 0 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.anvil
def test_revenue_reports_per_article_day_and_total(
    chain_env: ChainEnv, store: PaymentStore, tmp_path: Path
) -> None:
    payer = chain_env.new_payer()
    app = paywalled(chain_env, store, rates={"CNY": "0.1385"})

    async def go() -> Any:
        async with asgi_client(app) as client:
            for _ in range(2):
                unpaid = await client.get("/articles/farthing")
                header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
                paid = await client.get("/articles/farthing", headers={"PAYMENT-SIGNATURE": header})
                assert paid.status_code == 200

    run(go())
    url = str(store.engine.url)
    result = run_farthing(
        ["paywall", "revenue", "--json", "--database-url", url], env=cli_env(tmp_path / "d")
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"]["payments"] == 2 and report["total"]["amount"] == "20000"
    assert report["total"]["usdc"] == "0.02"  # the one money form: trailing zeros trimmed
    assert report["articles"][0]["key"] == "/articles/farthing"
    assert len(report["days"]) == 1
    table = run_farthing(
        ["paywall", "revenue", "--csv", "--database-url", url], env=cli_env(tmp_path / "d")
    )
    rows = list(csv.reader(io.StringIO(table.stdout)))
    assert rows[0][:4] == ["kind", "key", "payments", "usdc"] and rows[-1][0] == "total"
