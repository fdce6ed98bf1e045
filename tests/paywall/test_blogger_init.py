"""A blogger's first steps with ``farthing paywall``, run as real processes on a real dev chain.

``init`` writes a relayer key (mode 600) and gives it gas on a local dev chain,
so the ``next:`` line it prints starts ``serve`` as printed; bad addresses and
URLs are refused before anything is written; ``revenue`` and ``resolve`` read
``./farthing.toml`` when it is there and say which database they read; ``serve``
takes the ``--passphrase-file`` its passphrase error names.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from farthing.wallet.chain import open_chain
from tests import zygote
from tests.conftest import DevChainProcess, cli_env, free_port, ready_line, run_farthing

PAY_TO = "0x" + "ab" * 20
TOKEN = "0x" + "cd" * 20


def _init_args(out: Path, **over: str) -> list[str]:
    values = {
        "--upstream": "http://127.0.0.1:4000",
        "--pay-to": PAY_TO,
        "--rpc-url": "http://127.0.0.1:9",
        "--token": TOKEN,
        **over,
    }
    args = ["paywall", "init", "--output", str(out)]
    for flag, value in values.items():
        args += [flag, value]
    return args


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--pay-to", "0xnotanaddress", "--pay-to"),
        ("--token", "0x1234", "--token"),
        ("--upstream", "localhost:4000", "--upstream"),
        ("--rpc-url", "ftp://chain", "--rpc-url"),
        ("--facilitator-url", "facilitator.example", "--facilitator-url"),
    ],
)
def test_init_refuses_a_bad_address_or_url_and_writes_nothing(
    tmp_path: Path, flag: str, value: str, said: str
) -> None:
    out = tmp_path / "farthing.toml"
    result = run_farthing(_init_args(out, **{flag: value}), env=cli_env(tmp_path / "data"))
    assert result.code != 0
    assert said in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_init_on_an_unreachable_chain_writes_the_key_and_says_what_gas_it_needs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "farthing.toml"
    result = run_farthing(_init_args(out), env=cli_env(tmp_path / "data"))
    assert result.code == 0, result.stderr
    key = tmp_path / "relayer.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert "relayer 0x" in result.stdout and "gas" in result.stdout
    assert key.read_text().strip() not in result.stdout + result.stderr


@pytest.mark.anvil
def test_init_then_its_next_lines_work_as_printed_on_a_dev_chain(
    dev_chain: DevChainProcess, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    env = cli_env(dev_chain.data_dir)
    token = dev_chain.info["token"]["address"]
    args = _init_args(Path("farthing.toml"), **{"--rpc-url": dev_chain.rpc_url, "--token": token})
    done = zygote.run_process(
        [sys.executable, "-m", "farthing", *args, "--json"],
        cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.splitlines()[-1])
    relayer = said["relayer"]["address"]
    assert said["relayer"]["gas_transaction"]
    chain = open_chain(dev_chain.rpc_url)
    assert chain.native_balance(relayer) > 0
    assert (site / "relayer.key").stat().st_mode & 0o777 == 0o600
    # The next line is the one the user types, with a port that is free here.
    argv = shlex.split(said["next"])
    assert argv[:3] == ["farthing", "paywall", "serve"]
    port = str(free_port())
    process = zygote.spawn(
        [sys.executable, "-m", "farthing", *argv[1:], "--json", "--port", port],
        cwd=site, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = ready_line(process, 120)
        assert ready["url"] == f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=30)
    # revenue in the site's folder reads the site's database, and says so.
    report = zygote.run_process(
        [sys.executable, "-m", "farthing", "paywall", "revenue", "--json"],
        cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["database"].endswith(str(site / "paywall.sqlite"))
    assert not (dev_chain.data_dir / "paywall.sqlite").exists()
    text = zygote.run_process(
        [sys.executable, "-m", "farthing", "paywall", "resolve", "--rpc-url", dev_chain.rpc_url],
        cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert str(site / "paywall.sqlite") in text.stdout


def test_revenue_with_data_dir_reads_that_folder_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    data.mkdir()
    result = run_farthing(
        ["paywall", "revenue", "--data-dir", str(data)], env=cli_env(tmp_path / "data")
    )
    assert result.code == 0, result.stderr
    assert "database " in result.stdout and str(data / "paywall.sqlite") in result.stdout


@pytest.mark.anvil
def test_serve_takes_the_passphrase_file_its_error_names(
    dev_chain: DevChainProcess, tmp_path: Path
) -> None:
    env = cli_env(dev_chain.data_dir)
    created = run_farthing(["wallet", "new", "--name", "relayer", "--json"], env=env)
    assert created.code == 0, created.stderr
    keystore = Path(created.json()["keystore"])
    del env["FARTHING_WALLET_PASSPHRASE"]
    args = [
        "paywall", "serve", "--upstream", "http://127.0.0.1:4000", "--pay-to", PAY_TO,
        "--rpc-url", dev_chain.rpc_url, "--token", dev_chain.info["token"]["address"],
        "--key-file", str(keystore), "--route", "/posts/** 0.01 USDC",
        "--database-url", f"sqlite:///{tmp_path / 'paywall.sqlite'}",
    ]  # fmt: skip
    missing = run_farthing(args, env=env)
    assert missing.code != 0 and "--passphrase-file" in missing.stderr
    secret = tmp_path / "pass.txt"
    secret.write_text(env_passphrase() + "\n")
    secret.chmod(0o600)
    process = zygote.spawn(
        [sys.executable, "-m", "farthing", *args, "--passphrase-file", str(secret), "--json",
         "--port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ready_line(process, 120)["url"].startswith("http://127.0.0.1:")
    finally:
        process.terminate()
        process.communicate(timeout=30)


def env_passphrase() -> str:
    return cli_env(Path("unused"))["FARTHING_WALLET_PASSPHRASE"]


def test_init_says_the_preview_is_whole_blocks_in_its_output_and_its_file(tmp_path: Path) -> None:
    out = tmp_path / "farthing.toml"
    result = run_farthing(_init_args(out), env=cli_env(tmp_path / "data"))
    assert result.code == 0, result.stderr
    assert "preview: " in result.stdout and "whole blocks" in result.stdout
    line = next(x for x in out.read_text().splitlines() if x.startswith("preview_fraction"))
    assert "whole blocks" in line
