"""``farthing inference serve|build-model|gateway|price`` work as real processes, and bad input is one clear line.

Every command runs as ``python -m farthing``. The gateway is run for real:
free in front of the fake vLLM, and paid on the shared anvil chain with the
local facilitator, a payer paying it with an EIP-3009 authorization, and the
merchant's revenue booked in a SQLite ledger. ``serve`` itself starts the
session's real vLLM (the ``vllm`` fixture) and is stopped there with Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report
from farthing.paywall.wire import unb64_json
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests import zygote
from tests.conftest import CliResult, clean_env, free_port, ready_line, run_farthing
from tests.inference.conftest import PAYER_FUNDS, fake_vllm_process, payment_header
from tests.inference.fake_vllm import MODEL, prompt_tokens


def farthing(args: list[str], tmp_path: Path, **env: str) -> CliResult:
    return run_farthing(args, env=clean_env(FARTHING_DATA_DIR=str(tmp_path), **env), timeout_s=60)


def one_error_line(result: CliResult) -> str:
    assert result.code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [[], ["serve"], ["build-model"], ["gateway"], ["price"]])
def test_help(command: list[str], tmp_path: Path) -> None:
    result = farthing(["inference", *command, "--help"], tmp_path)
    assert result.code == 0, result.stderr
    assert "Usage" in result.stdout


def test_price_json_reports_every_input_from_the_environment(tmp_path: Path) -> None:
    result = farthing(
        ["inference", "price", "--json"],
        tmp_path,
        FARTHING_INFERENCE_ACCELERATOR_USD_PER_HOUR="2.00",
        FARTHING_INFERENCE_POWER_KW="0.7",
        FARTHING_INFERENCE_ENERGY_USD_PER_KWH="0.20",
        FARTHING_INFERENCE_DEPRECIATION_USD_PER_HOUR="0.36",
        FARTHING_INFERENCE_MARGIN="0.2",
        FARTHING_INFERENCE_TOKENS_PER_HOUR_ASSUMED="1000000",
    )
    assert result.code == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    report = result.json()
    # 2.50 $/h ÷ 1,000,000 tokens/h × 1000 × 1.2 = 0.003 per 1k = 3000 atomic
    assert report["price_per_1k_atomic"] == 3000
    assert report["price_per_1k"] == "0.003"
    assert report["tokens_per_hour_source"] == "assumed"
    assert report["accelerator_usd_per_hour"] == "2.00"
    assert not [k for k, v in report.items() if isinstance(v, float)]


def test_price_from_an_unreachable_server_says_why(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = farthing(["inference", "price", "--upstream", url, "--json"], tmp_path)
    assert result.code == 0, result.stderr
    assert "nothing answers" in result.json()["metrics_error"]


def test_price_from_the_fake_server_reads_its_queue(tmp_path: Path) -> None:
    with fake_vllm_process() as (url, _):
        result = farthing(["inference", "price", "--upstream", url, "--json"], tmp_path)
    assert result.code == 0, result.stderr
    assert result.json()["metrics_error"] is None
    assert result.json()["requests_waiting"] == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve"], {}, "no model"),
        (["serve", "--model", "m", "--python", "/nonexistent/python"], {}, "setup_vllm.sh"),
        (["serve", "--model", "m", "--device", "tpu"], {}, "device"),
        (["build-model", "--python", "/nonexistent/python"], {}, "setup_vllm.sh"),
        (["gateway", "--upstream", "http://127.0.0.1:1"], {}, "no payee"),
        (["gateway", "--pay-to", "0x" + "11" * 20], {}, "--rpc-url and --token"),
        (["price"], {"FARTHING_INFERENCE_MARGIN": "lots"}, "margin"),
        (["price"], {"FARTHING_INFERENCE_DEMAND_FACTOR_MIN": "5"}, "demand_factor_min"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    assert message in one_error_line(farthing(["inference", *args], tmp_path, **env))


@contextmanager
def gateway_process(
    args: list[str], tmp_path: Path, output: list[str] | None = None
) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str]]]:
    """``farthing inference gateway ... --json`` as a real process, stopped with Ctrl-C.

    What it printed (stdout, then stderr) is appended to ``output``.
    """
    process = zygote.spawn(
        [
            sys.executable,
            "-m",
            "farthing",
            "inference",
            "gateway",
            "--port",
            str(free_port()),
            "--json",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(FARTHING_DATA_DIR=str(tmp_path), FARTHING_INFERENCE_METRICS_REFRESH_S="0"),
    )
    try:
        yield ready_line(process, 60), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            printed = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            printed = process.communicate()
        if output is not None:
            output.extend(printed)


def test_a_free_gateway_process_proxies_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, "--free"], tmp_path) as (
            ready,
            process,
        ),
    ):
        assert ready["paid"] is False
        url = ready["url"]
        assert httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"] == MODEL
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert answer.status_code == 200
        assert (
            int(answer.headers["x-farthing-tokens-priced"]) == prompt_tokens(body["messages"]) + 4
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_a_paid_gateway_process_charges_on_chain_and_books_revenue(
    anvil_chain: RpcChain, tmp_path: Path
) -> None:
    accounts = anvil_chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[7]
    asset = deploy_stablecoin(anvil_chain, sender=owner)
    token = Stablecoin(anvil_chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    merchant = LocalSigner.generate().address
    key_file = tmp_path / "relayer.key"
    key_file.write_text(relayer.private_key.get_secret_value() + "\n")
    os.chmod(key_file, 0o600)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "buy?"}], "max_tokens": 8}
    args = [
        "--pay-to", merchant, "--rpc-url", anvil_chain.rpc_url or "", "--token", asset.address,
        "--key-file", str(key_file), "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}",
        "--ledger-database-url", ledger_url,
    ]  # fmt: skip
    printed: list[str] = []
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, *args], tmp_path, printed) as (ready, _),
    ):
        assert (ready["paid"], ready["network"], ready["pay_to"]) == (True, asset.network, merchant)
        url = ready["url"]
        challenge = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert challenge.status_code == 402
        header, amount = payment_header(payer, challenge)
        paid = httpx.post(
            f"{url}/v1/chat/completions",
            json=body,
            headers={"payment-signature": header},
            timeout=60,
        )
        assert paid.status_code == 200, paid.text
        assert unb64_json(paid.headers["payment-response"])["success"] is True
    secret = relayer.private_key.get_secret_value().removeprefix("0x")
    assert not [text for text in printed if secret in text], "the settling key was printed"
    assert token.balance_of(merchant) == amount
    assert token.balance_of(payer.address) == PAYER_FUNDS - amount
    database = LedgerDatabase(LedgerSettings(database_url=ledger_url))
    with database.read() as session:
        rows = revenue_report(session=session, payee_address=merchant)
    database.engine.dispose()
    assert [(r.posted, r.payment_count) for r in rows] == [(amount, 1)]
