"""``farthing jobs`` works as a real process against a real ``farthing chain dev`` (anvil).

The agent's and the operator's keys are encrypted keystores in the test's
data directory; the payer is funded by a mint. Every command is run with
``--json`` and its one line read; refusals exit 1 with one line on stderr
and no traceback. Reconciliation ends with no break.
"""

from __future__ import annotations

from pydantic import SecretStr

from farthing.wallet.chain import RpcChain
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin
from tests.conftest import TEST_PASSPHRASE, CliResult, DevChainProcess, cli_env, run_farthing


def test_jobs_commands_end_to_end(dev_chain: DevChainProcess) -> None:
    data_dir = dev_chain.data_dir
    deployment = load_dev_deployment(data_dir)
    chain = RpcChain(deployment.rpc_url, timeout_s=5.0, receipt_timeout_s=30.0)
    wallet_settings = WalletSettings(data_dir=data_dir, scrypt_n=2**12)
    payer, operator = (a.signer() for a in chain.dev_accounts()[5:7])  # they hold ETH for gas
    write_keystore(wallet_settings, "default", payer, SecretStr(TEST_PASSPHRASE))
    write_keystore(wallet_settings, "operator", operator, SecretStr(TEST_PASSPHRASE))
    token = Stablecoin(chain, deployment.token)
    minter = deployment.minter_signer()
    assert token.mint(payer.address, 10_000_000, sender=minter).ok
    assert token.mint(operator.address, 1_000_000, sender=minter).ok
    payer_before = token.balance_of(payer.address)
    env = cli_env(data_dir)

    def jobs(*args: str) -> CliResult:
        return run_farthing(["jobs", "--operator-wallet", "operator", *args], env=env)

    def ok(*args: str) -> dict[str, object]:
        result = jobs(*args, "--json")
        assert result.code == 0, result.stderr
        payload: dict[str, object] = result.json()
        return payload

    def refused(*args: str) -> str:
        result = jobs(*args)
        assert result.code == 1, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr
        return lines[0]

    # Stated, not the newcomer's default (a person approves each payment above 0.10).
    policy = run_farthing(["agent", "policy", "set", "--approval-above", "none"], env=env)
    assert policy.code == 0, policy.stderr
    posted = ok(
        "post", "--title", "Translate to Hindi", "--spec", "Translate the text.",
        "--criteria", "complete translation", "--price", "500 INR", "--rate", "0.0119",
        "--deadline", "2h",
    )  # fmt: skip
    job = posted["job"]
    assert isinstance(job, dict)
    assert (job["state"], job["amount"], job["rate"]) == ("open", "5950000", "0.0119")
    first = str(job["id"])
    worker = LocalSigner.generate().address
    assert ok("accept", first, "--worker", worker)["ok"] is True
    assert "not_the_worker" in refused("deliver", first, "--worker", payer.address, "--text", "x")
    ok("deliver", first, "--worker", worker, "--text", "a complete translation")
    reviewed = ok("review", first)  # the scripted rule: the criterion's words are there
    assert reviewed["job"]["state"] == "paid"  # type: ignore[index]
    assert token.balance_of(worker) == 5_950_000

    second = str(ok(
        "post", "--title", "Logo", "--spec", "Draw it.", "--criteria", "svg",
        "--price", "2 USDC", "--deadline", "1d",
    )["job"]["id"])  # type: ignore[index]  # fmt: skip
    ok("accept", second, "--worker", worker)
    ok("deliver", second, "--worker", worker, "--url", "https://example.com/logo.svg")
    assert "capture_exceeds_hold" in refused("capture", second, "--amount", "2.000001")
    ok("capture", second, "--amount", "0.5")
    ok("void", second)
    assert "nothing_on_hold" in refused("void", second)
    assert "refund_exceeds_captured" in refused("refund", second, "--amount", "0.6")
    refunded = ok("refund", second, "--amount", "0.2")
    assert refunded["job"]["state"] == "refunded"  # type: ignore[index]
    assert token.balance_of(payer.address) == payer_before - 5_950_000 - 500_000 + 200_000

    listed = ok("list")["jobs"]
    assert [j["state"] for j in listed] == ["refunded", "paid"]  # type: ignore[index,union-attr]
    shown = ok("show", first)
    assert shown["delivery"] == {"kind": "text", "content": "a complete translation"}
    reconciled = jobs("reconcile", "--json")
    assert reconciled.code == 0, reconciled.stderr
    assert reconciled.json() == {"breaks": [], "count": 0}

    assert "exceeds_budget" in refused(
        "post", "--title", "Too dear", "--spec", "x", "--criteria", "x",
        "--price", "1000000 USDC", "--deadline", "1d",
    )  # fmt: skip
    assert "cannot read the deadline" in refused(
        "post", "--title", "t", "--spec", "x", "--criteria", "x", "--price", "1 USDC",
        "--deadline", "soon",
    )  # fmt: skip
    assert "needs a rate" in refused(
        "post", "--title", "t", "--spec", "x", "--criteria", "x", "--price", "1 INR",
        "--deadline", "1d",
    )  # fmt: skip
    assert "there is no job 99" in refused("show", "99")
    assert "cannot read the verdict" in refused("review", second, "--verdict", "maybe")
    chain.close()
