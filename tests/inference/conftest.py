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

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.inference import Gateway, GatewayPayment, InferenceSettings, Upstream
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
from tests import zygote
from tests.conftest import free_port
from tests.inference.fake_vllm import FakeVllm

PAYER_FUNDS = 50_000_000  # 50 USDC
FAKE_SCRIPT = Path(__file__).with_name("fake_vllm.py")


# ------------------------------------------------------------------ the fake vLLM


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_vllm() -> FakeVllm:
    return FakeVllm()


@contextmanager
def fake_vllm_process(
    mode: str = "ok", *options: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The fake vLLM as a real server process (its stream really paced); yields its URL."""
    port = free_port()
    process = zygote.spawn(
        [sys.executable, str(FAKE_SCRIPT), "--port", str(port), "--mode", mode, *options],
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
