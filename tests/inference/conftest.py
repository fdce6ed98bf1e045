"""Fixtures for the inference tests: one real vLLM per session, a fake vLLM, and a paying chain.

``vllm`` starts ``farthing inference serve`` (the real CLI) on the tiny model,
once per session, with vLLM from ``.venv-vllm``; its teardown interrupts the
CLI as Ctrl-C would and checks that vLLM's whole process group is gone. Tests
that take it are marked ``vllm`` and are skipped only when ``.venv-vllm`` is
missing (``bash scripts/setup_vllm.sh`` makes it; ``scripts/test.sh`` runs
that first, so CI never skips them).

``fake_vllm`` answers like vLLM without a model, for the fast tests.
``paid_env`` deploys the stablecoin on the session's memory chain and gives a
payer, a merchant, a payment store and the merchant's ledger.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.inference import Gateway, GatewayPayment, InferenceSettings, Upstream
from farthing.inference.builder import build_tiny_model
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentStore
from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequirements,
    encode_payment_signature,
    unb64_json,
)
from farthing.wallet.chain import MemoryChain
from farthing.wallet.eip3009 import build_authorization, sign_authorization
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import free_port
from tests.inference.fake_vllm import FakeVllm

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SERVED_MODEL = "tiny"
VLLM_STARTUP_TIMEOUT_S = 420  # about 30 s here; generous for a loaded CI machine
VLLM_STOP_TIMEOUT_S = 60
PAYER_FUNDS = 50_000_000  # 50 USDC
FAKE_SCRIPT = Path(__file__).with_name("fake_vllm.py")


def vllm_missing_reason() -> str | None:
    """Why the real vLLM cannot run here, or None when it can."""
    if not VLLM_PYTHON.exists():
        return f"{VLLM_PYTHON} is missing: run bash scripts/setup_vllm.sh (scripts/test.sh does)"
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without FARTHING_* settings that would leak into a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    env.update(NO_COLOR="1", COLUMNS="200", **extra)
    return env


def group_alive(pgid: int) -> bool:
    """Whether a live process (zombies are dead) is still in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


# ------------------------------------------------------------------ the real vLLM


@pytest.fixture(scope="session")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The tiny random Llama, built once into pytest's cache (the builder skips an up-to-date build)."""
    reason = vllm_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    cache = request.config.cache  # None when run with -p no:cacheprovider
    if cache is not None:
        out = Path(cache.mkdir("farthing-tiny-model"))
    else:
        out = request.getfixturevalue("tmp_path_factory").mktemp("tiny-model")
    return build_tiny_model(out, python=VLLM_PYTHON)


@dataclass
class VllmProcess:
    """``farthing inference serve`` running vLLM; ``pid`` is vLLM's (and its group's) id."""

    base_url: str
    model: str
    pid: int
    cli: subprocess.Popen[str]
    log: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


def ready_line(process: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    """The CLI's one JSON line, read on a thread so a silent process cannot hang the session."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise RuntimeError(f"{process.args!r} printed no ready line within {timeout_s} s")


@pytest.fixture(scope="session")
def vllm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmProcess]:
    """One real vLLM for the session, started and stopped by the real CLI."""
    logs = tmp_path_factory.mktemp("vllm")
    vllm_log, cli_err = logs / "vllm.log", logs / "cli.stderr"
    argv = [
        sys.executable, "-m", "farthing", "inference", "serve",
        "--model", str(tiny_model), "--served-model-name", SERVED_MODEL,
        "--port", str(free_port()), "--python", str(VLLM_PYTHON), "--device", "cpu",
        "--startup-timeout-s", str(VLLM_STARTUP_TIMEOUT_S), "--log-file", str(vllm_log), "--json",
    ]  # fmt: skip
    with cli_err.open("w") as stderr:
        cli = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_env(FARTHING_DATA_DIR=str(logs)),
        )
    pid = None
    try:
        ready = ready_line(cli, VLLM_STARTUP_TIMEOUT_S + 30)
        pid = int(ready["pid"])
        yield VllmProcess(ready["base_url"], ready["model"], pid, cli, vllm_log)
    except RuntimeError:
        tail = cli_err.read_text()[-3000:] if cli_err.exists() else ""
        raise RuntimeError(f"vLLM did not start; the CLI said:\n{tail}") from None
    finally:
        # Ctrl-C, as a user would stop it; the CLI must take vLLM's group down.
        if cli.poll() is None:
            cli.send_signal(signal.SIGINT)
        try:
            code = cli.wait(timeout=VLLM_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            cli.kill()
            code = cli.wait()
        leaked = pid is not None and group_alive(pid)
        if leaked:
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)
        if cli.stdout is not None:
            cli.stdout.close()
        if pid is not None:
            assert code == 0, f"farthing inference serve exited {code} on Ctrl-C"
            assert not leaked, "vLLM's process group outlived farthing inference serve"


# ------------------------------------------------------------------ the fake vLLM


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_vllm() -> FakeVllm:
    return FakeVllm()


@contextmanager
def fake_vllm_process(mode: str = "ok") -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The fake vLLM as a real server process; yields its URL and the process."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(FAKE_SCRIPT), "--port", str(port), "--mode", mode],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the fake vLLM did not start") from None
                time.sleep(0.05)
        yield url, process
    finally:
        process.kill()
        process.wait()


def fast_settings(**overrides: Any) -> InferenceSettings:
    """Settings for the fake: short timeouts, and metrics read on every quote."""
    values: dict[str, Any] = {
        "upstream_url": "http://fake-vllm",
        "upstream_timeout_s": 2.0,
        "connect_timeout_s": 1.0,
        "metrics_timeout_s": 2.0,
        "metrics_refresh_s": 0.0,
        "max_tokens_max": 64,
        "max_tokens_default": 16,
        "data_dir": Path("/nonexistent-farthing-data"),
    }
    values.update(overrides)
    return InferenceSettings(**values)


def fake_upstream(fake: FakeVllm, settings: InferenceSettings) -> Upstream:
    """An ``Upstream`` whose HTTP goes to the fake in-process."""
    return Upstream(
        settings.upstream_url,
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        quick_timeout_s=settings.metrics_timeout_s,
        transport=httpx.ASGITransport(app=fake.app()),
    )


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", timeout=30.0
    )


# ------------------------------------------------------------------ paying


def payment_header(payer: LocalSigner, challenge: httpx.Response) -> tuple[str, int]:
    """A PAYMENT-SIGNATURE paying a 402's terms, and the amount it authorizes."""
    terms = unb64_json(challenge.headers["payment-required"])
    requirements = PaymentRequirements.from_wire(terms["accepts"][0])
    authorization = build_authorization(
        from_address=payer.address,
        to=requirements.pay_to,
        value=requirements.amount,
        valid_for_s=300,
    )
    signed = sign_authorization(payer, authorization, requirements.domain())
    payload = PaymentPayload(
        accepted=requirements, authorization=authorization, signature=signed.signature
    )
    return encode_payment_signature(payload), requirements.amount


@dataclass
class PaidEnv:
    """The stablecoin on a memory chain, a funded payer, a merchant, and the merchant's books."""

    chain: MemoryChain
    asset: Asset
    token: Stablecoin
    relayer: LocalSigner
    merchant: str
    payer: LocalSigner
    store: PaymentStore
    ledger: LedgerDatabase

    def payment(self) -> GatewayPayment:
        return GatewayPayment(
            facilitator=LocalFacilitator(self.chain, self.relayer),
            store=self.store,
            asset=self.asset,
            pay_to=self.merchant,
            books=LedgerRevenueBook(self.ledger),
        )

    def gateway(self, settings: InferenceSettings, upstream: Upstream | None = None) -> Gateway:
        return Gateway(settings, upstream=upstream, payment=self.payment())

    def pay(self, challenge: httpx.Response) -> tuple[str, int]:
        return payment_header(self.payer, challenge)

    def balance(self, address: str) -> int:
        return self.token.balance_of(address)

    def revenue(self) -> tuple[int, int]:
        """The merchant's booked revenue: (atomic units posted, payments)."""
        from farthing.ledger import revenue_report

        with self.ledger.read() as session:
            rows = revenue_report(session=session, payee_address=self.merchant)
        return sum(r.posted for r in rows), sum(r.payment_count for r in rows)


@pytest.fixture
def paid_env(memory_chain: MemoryChain, tmp_path: Path) -> Iterator[PaidEnv]:
    accounts = [a.signer() for a in memory_chain.dev_accounts()[:4]]
    owner, relayer = accounts[0], accounts[3]
    asset = deploy_stablecoin(memory_chain, sender=owner)
    token = Stablecoin(memory_chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    store = PaymentStore.sqlite(tmp_path / "gateway-payments.sqlite")
    ledger = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'merchant-ledger.sqlite'}")
    )
    upgrade_database(ledger)
    yield PaidEnv(
        memory_chain, asset, token, relayer, LocalSigner.generate().address, payer, store, ledger
    )
    store.dispose()
    ledger.engine.dispose()
