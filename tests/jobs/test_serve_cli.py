"""``farthing jobs serve --json --port 0`` starts as a real process, answers, and stops on SIGTERM.

Against a real ``farthing chain dev`` (anvil) with the agent's keystore in the
test's data directory: the ready line names the URL, ``GET /`` answers the
page with its strict CSP, the API lists a job posted through ``farthing jobs
post``, and SIGTERM ends the process within a bound, with no traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
from pydantic import SecretStr

from farthing.wallet.chain import RpcChain
from farthing.wallet.devchain import load_dev_deployment
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.token import Stablecoin
from tests.conftest import TEST_PASSPHRASE, DevChainProcess, cli_env, run_farthing

STOP_BOUND_S = 30  # uvicorn's graceful shutdown is 5 s; the rest is a loaded machine


def test_serve_answers_and_stops_on_sigterm(dev_chain: DevChainProcess) -> None:
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
    job_id = posted.json()["job"]["id"]

    assert "--public-url" in run_farthing(["jobs", "serve", "--help"], env=env).stdout
    process = subprocess.Popen(
        [sys.executable, "-m", "farthing", "jobs", "serve", "--json", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.communicate(timeout=30)[1]
        ready = json.loads(line)
        url = ready["url"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        with httpx.Client(base_url=url, timeout=30) as client:
            page = client.get("/")
            assert page.status_code == 200 and "Open jobs" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert "Logo" in page.text and "2 USDC" in page.text
            listed = client.get("/api/jobs").json()["jobs"]
            assert [(j["id"], j["amount"]) for j in listed] == [(job_id, "2000000")]
            assert client.post(f"/api/jobs/{job_id}/accept").status_code == 401
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=STOP_BOUND_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
