"""``farthing jobs serve`` starts as a real process, answers, survives hostile requests, and stops on SIGTERM.

Against a real ``farthing chain dev`` (anvil) with the agent's keystore in the
test's data directory: the ready line names the URL, ``GET /`` answers the
page with its strict CSP, the API lists a job posted through ``farthing jobs
post``, and SIGTERM ends the process within a bound, with no traceback.
Without ``--public-url`` it says at start that sign-in is off, and refuses it;
with one, a worker signs in with a fresh wallet, and a body nested 100,000
deep is a 400 in JSON while the process stays up and keeps answering; a
forged ``Host`` gets 421; a bind beyond loopback without a public URL is
refused in one line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from farthing.wallet.chain import RpcChain
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.token import Stablecoin
from tests import zygote
from tests.conftest import TEST_PASSPHRASE, DevChainProcess, cli_env, free_port, run_farthing
from tests.jobs.test_server import _signed

STOP_BOUND_S = 30  # uvicorn's graceful shutdown is 5 s; the rest is a loaded machine


def _agent_with_a_job(dev_chain: DevChainProcess) -> tuple[dict[str, str], int]:
    """The agent's keystore in the data dir, its wallet funded, and one job posted."""
    data_dir = dev_chain.data_dir
    chain = RpcChain(dev_chain.rpc_url, timeout_s=5.0, receipt_timeout_s=30.0)
    payer = chain.dev_accounts()[5].signer()
    deployment = load_dev_deployment(data_dir)
    token = Stablecoin(chain, deployment.token)
    assert token.mint(payer.address, 5_000_000, sender=deployment.minter_signer()).ok
    chain.close()
    write_keystore(
        WalletSettings(data_dir=data_dir, scrypt_n=2**12),
        "default",
        payer,
        SecretStr(TEST_PASSPHRASE),
    )
    env = cli_env(data_dir)
    posted = run_farthing(
        ["jobs", "post", "--title", "Logo", "--spec", "Draw it.", "--criteria", "svg",
         "--price", "2 USDC", "--deadline", "1d", "--json"],
        env=env,
    )  # fmt: skip
    assert posted.code == 0, posted.stderr
    return env, int(posted.json()["job"]["id"])


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    process = zygote.spawn(
        [sys.executable, "-m", "farthing", "jobs", "serve", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise AssertionError(process.communicate(timeout=30)[1])
    return process, json.loads(line)


def _stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, within a bound; the process's stderr."""
    try:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=STOP_BOUND_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    return err


def test_serve_answers_and_stops_on_sigterm(dev_chain: DevChainProcess) -> None:
    env, job_id = _agent_with_a_job(dev_chain)
    assert "--public-url" in run_farthing(["jobs", "serve", "--help"], env=env).stdout
    process, ready = _start(env, "--port", "0")
    try:
        url = str(ready["url"])
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        assert ready["signIn"] is False
        with httpx.Client(base_url=url, timeout=30) as client:
            page = client.get("/")
            assert page.status_code == 200 and "Open jobs" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert "Logo" in page.text and "2 USDC" in page.text
            assert "Sign-in is off" in page.text
            listed = client.get("/api/jobs").json()["jobs"]
            assert [(j["id"], j["amount"]) for j in listed] == [(job_id, "2000000")]
            assert client.post(f"/api/jobs/{job_id}/accept").status_code == 401
            assert client.get("/api/sign-in").json()["error"] == "sign_in_off"
    finally:
        err = _stop(process)
    assert "sign-in is off" in err and "--public-url" in err
    assert len([line for line in err.splitlines() if "sign-in" in line]) == 1


def test_one_deeply_nested_body_is_a_400_and_the_server_lives_on(
    dev_chain: DevChainProcess,
) -> None:
    env, job_id = _agent_with_a_job(dev_chain)
    port = free_port()
    public = f"http://127.0.0.1:{port}/"
    process, ready = _start(env, "--port", str(port), "--public-url", public)
    try:
        assert ready["signIn"] is True and ready["publicUrl"] == public
        worker: LocalAccount = Account.create()
        with httpx.Client(base_url=public, timeout=60) as client:
            challenge = client.get("/api/sign-in").json()
            signed_in = client.post("/api/sign-in", json=_signed(challenge, worker))
            assert signed_in.status_code == 200, signed_in.text
            bearer = {"authorization": f"Bearer {signed_in.json()['token']}"}
            deep = b"[" * 100_000 + b"]" * 100_000
            for path in (f"/api/jobs/{job_id}/deliver", f"/api/jobs/{job_id}/accept"):
                answer = client.post(
                    path, content=deep, headers={**bearer, "content-type": "application/json"}
                )
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"] == "json_too_deep"
                assert process.poll() is None
            assert client.get("/api/me", headers=bearer).json()["address"] == worker.address
            forged = client.get("/api/sign-in", headers={"host": "evil.example"})
            assert forged.status_code == 421
            assert client.get(f"/api/jobs/{job_id}").json()["state"] == "open"
    finally:
        _stop(process)


def test_a_bind_beyond_loopback_needs_the_public_url(tmp_path: Path) -> None:
    refused = run_farthing(
        ["jobs", "serve", "--host", "0.0.0.0", "--port", "0"], env=cli_env(tmp_path)
    )
    assert refused.code == 1
    assert refused.stderr.count("\n") == 1 and "--public-url" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = run_farthing(
        ["jobs", "serve", "--public-url", "ftp://jobs.example/"], env=cli_env(tmp_path)
    )
    assert bad.code == 1 and bad.stderr.count("\n") == 1 and "public" in bad.stderr
