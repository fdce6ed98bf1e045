"""The crash-point suite's machinery: real processes to kill, their recoveries, and the invariants.

* :func:`start_paywall` runs ``farthing paywall serve`` in front of the
  module's upstream, with its payment store and revenue books in SQLite files
  of one :class:`Site`, optionally armed with ``FARTHING_CRASH_AT``;
* :func:`pay` runs ``tests/faults/pay_once.py``, one agent buying one URL,
  optionally armed; :func:`pay_here` and :func:`pay_many_here` make the same
  purchases in this process, for tests where only the paywall dies;
* :func:`agent_resolve` and :func:`paywall_resolve` run the documented
  recoveries, ``farthing agent resolve`` and ``farthing paywall resolve``;
* :func:`assert_invariants` checks what must hold after any crash and its
  recovery (``docs/reliability.md`` lists them).

The ``spawn_…`` variants start a process without waiting for it, so a test
module can run one phase for all its points at once. Every wait is bounded,
every port comes from the OS, and every process is ended by its own id if a
test leaves it running.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import SecretStr

from farthing.agents.books import AgentBooks
from farthing.agents.integrity import ledger_balanced, reconcile_books
from farthing.agents.payer import Payer
from farthing.agents.reservations import booked_payments, open_payments
from farthing.agents.resolve import resolve_possible_spend
from farthing.agents.settings import AgentSettings
from farthing.devchain.node import AnvilNode
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import reconcile
from farthing.paywall.records.payments import PaymentState
from farthing.paywall.records.store import PaymentStore
from farthing.wallet.chain import RpcChain, address_topic
from farthing.wallet.keystore import write_keystore
from farthing.wallet.money import Asset
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import AUTHORIZATION_USED_TOPIC, Stablecoin
from tests import zygote
from tests.conftest import TEST_PASSPHRASE, CliResult, cli_env
from tests.faults.pay_once import buy

REPO: Final = Path(__file__).resolve().parents[2]
PAY_ONCE: Final = Path(__file__).with_name("pay_once.py")
PRICE: Final = "0.01 USDC"
PRICE_ATOMIC: Final = 10_000
AGENT_FUNDS: Final = 1_000_000
MARKER: Final = "paid-data"  # in the upstream's /api/data answer: the paid content arrived
PROCESS_TIMEOUT_S: Final = 300  # generous: the suite runs beside other heavy work on 2 cores
READY_TIMEOUT_S: Final = 300  # generous: a phase starts several at once on 2 cores
PAYER_READ_TIMEOUT_S: Final = 20
SIGKILLED: Final = -signal.SIGKILL
# States a payment record may rest in once recovery is done: nothing claimed, nothing pending.
RESTING_STATES: Final = frozenset(
    {PaymentState.SETTLED, PaymentState.FAILED, PaymentState.EXPIRED, PaymentState.RELEASED}
)


@dataclass
class FaultChain:
    """A module's anvil with our token, the facilitator's key file and the upstream site."""

    node: AnvilNode
    chain: RpcChain
    asset: Asset
    token: Stablecoin
    owner: LocalSigner
    relayer_key_file: Path
    upstream_url: str
    work: Path


@dataclass
class Site:
    """One paywall's payee and files: its payment store and its revenue books."""

    merchant: str
    store_url: str
    revenue_url: str
    data_dir: Path
    start_block: int
    key_file: Path  # the key its facilitator settles with
    processes: list[subprocess.Popen[str]] = field(default_factory=list)


@dataclass
class Agent:
    """A funded agent: its key (also in a keystore for the CLI), its books, its data dir."""

    key: LocalSigner
    data_dir: Path
    database_url: str
    database: LedgerDatabase
    books: AgentBooks
    start_block: int

    @property
    def address(self) -> str:
        return self.key.address


@dataclass(frozen=True)
class PayResult:
    """One run of ``pay_once.py``: its exit code and, unless it was killed, its JSON line."""

    code: int
    result: dict[str, Any] | None
    stderr: str

    @property
    def content(self) -> bool:
        return bool(self.result and self.result["content"])


def new_site(fc: FaultChain, directory: Path, *, relayer_index: int | None = None) -> Site:
    """A fresh payee and database files; ``relayer_index`` gives it anvil dev account N to settle with.

    Sites that settle at the same time need keys of their own: each site's
    processes share relayer nonces through its own store only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_file = fc.relayer_key_file
    if relayer_index is not None:
        key_file = directory / "relayer.key"
        account = fc.chain.dev_accounts()[relayer_index]
        key_file.write_text(account.private_key.get_secret_value())
        os.chmod(key_file, 0o600)
    return Site(
        merchant=LocalSigner.generate().address,
        store_url=f"sqlite:///{directory / 'payments.sqlite'}",
        revenue_url=f"sqlite:///{directory / 'revenue.sqlite'}",
        data_dir=directory,
        start_block=fc.chain.block_number(),
        key_file=key_file,
    )


def new_agent(fc: FaultChain, directory: Path) -> Agent:
    """A fresh key, funded by a mint that its books record as the agent's funding."""
    directory.mkdir(parents=True, exist_ok=True)
    key = LocalSigner.generate()
    write_keystore(
        WalletSettings(data_dir=directory, scrypt_n=2**12),
        "default",
        key,
        SecretStr(TEST_PASSPHRASE),
    )
    start_block = fc.chain.block_number()
    assert fc.token.mint(key.address, AGENT_FUNDS, sender=fc.owner).ok
    url = f"sqlite:///{directory / 'agent.sqlite'}"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    books = AgentBooks(database, agent_id="agent", asset=fc.asset).ensure()
    assert books.sync_deposits(fc.chain, key.address, from_block=start_block) == 1
    return Agent(key, directory, url, database, books, start_block)


# ------------------------------------------------------------------ the paywall process


@dataclass
class Paywall:
    url: str
    process: subprocess.Popen[str]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_killed(self, timeout_s: float = PROCESS_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout_s)


def start_paywall(
    fc: FaultChain,
    site: Site,
    *,
    crash_at: str | None = None,
    lease_s: float | None = None,
) -> Paywall:
    """``farthing paywall serve`` for ``site`` on a free port, once it listens; see :func:`spawn_paywall`."""
    return paywall_ready(site, spawn_paywall(fc, site, crash_at=crash_at, lease_s=lease_s))


def spawn_paywall(
    fc: FaultChain,
    site: Site,
    *,
    crash_at: str | None = None,
    lease_s: float | None = None,
) -> subprocess.Popen[str]:
    """Start ``farthing paywall serve`` for ``site``; armed with ``crash_at`` if given.

    Several processes may serve one site: they share its payment store and
    revenue books, as replicas behind a load balancer do. ``lease_s``
    shortens the claim lease so a dead owner's claim runs out fast.
    """
    extra = {"FARTHING_CRASH_AT": crash_at} if crash_at else {}
    log = (site.data_dir / f"paywall-{len(site.processes)}.log").open("w")
    argv = [
        sys.executable, "-m", "farthing", "paywall", "serve", "--json",
        "--upstream", fc.upstream_url, "--route", f"GET /api/** {PRICE}",
        "--pay-to", site.merchant, "--token", fc.asset.address, "--rpc-url", fc.chain.rpc_url,
        "--key-file", str(site.key_file), "--database-url", site.store_url,
        "--ledger-database-url", site.revenue_url, "--port", "0",
    ]  # fmt: skip
    if lease_s is not None:
        argv += ["--claim-lease-s", str(lease_s)]
    with log:
        process = zygote.spawn(
            argv,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=cli_env(site.data_dir / "cli", **extra),
            cwd=REPO,
        )
    site.processes.append(process)
    return process


def paywall_ready(site: Site, process: subprocess.Popen[str]) -> Paywall:
    """Wait (bounded) until a spawned paywall listens."""
    try:
        ready = ready_line(process, READY_TIMEOUT_S)
    except RuntimeError:
        stop(process)
        raise RuntimeError(f"paywall did not start: {read_log(site)}") from None
    return Paywall(str(ready["url"]), process)


def ready_line(process: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    """The one JSON line a server prints once it listens, waited for at most ``timeout_s``.

    Read here rather than on a thread, so nothing is left reading the pipe
    when the process is stopped and the pipe closed.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=min(left, 1.0)):
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
    raise RuntimeError(f"no ready line within {timeout_s} s (exit code {process.poll()})")


def read_log(site: Site) -> str:
    return "\n".join(p.read_text()[-2000:] for p in sorted(site.data_dir.glob("paywall-*.log")))


def stop(process: subprocess.Popen[str]) -> None:
    """End a child we started, by its own id: politely, then for sure."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def stopping(site: Site) -> Iterator[Site]:
    """Kill every paywall process of ``site`` when the block ends, however it ends."""
    try:
        yield site
    finally:
        for process in site.processes:
            stop(process)


# ------------------------------------------------------------------ the paying process


def pay(
    fc: FaultChain,
    agent: Agent,
    url: str,
    *,
    crash_at: str | None = None,
    task_id: str = "buy-one",
) -> PayResult:
    """One agent process buying ``url``; armed with ``crash_at`` if given."""
    return pay_result(spawn_pay(fc, agent, url, crash_at=crash_at, task_id=task_id))


def spawn_pay(
    fc: FaultChain,
    agent: Agent,
    url: str,
    *,
    crash_at: str | None = None,
    task_id: str = "buy-one",
) -> subprocess.Popen[str]:
    """Start :func:`pay`'s process; several may run at once (one per agent)."""
    config = {
        "database_url": agent.database_url,
        "rpc_url": fc.chain.rpc_url,
        "token": fc.asset.address,
        "url": url,
        "agent_id": "agent",
        "task_id": task_id,
        "task_budget": 10 * PRICE_ATOMIC,
        "marker": MARKER,
        "timeout_s": PAYER_READ_TIMEOUT_S,
    }
    env = cli_env(agent.data_dir, FARTHING_TEST_AGENT_KEY=agent.key.private_key.get_secret_value())
    if crash_at:
        env["FARTHING_CRASH_AT"] = crash_at
    return zygote.spawn(
        [sys.executable, str(PAY_ONCE), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def finish(process: subprocess.Popen[str]) -> CliResult:
    """Wait (bounded) for a child to end; one that hangs is killed and reported."""
    try:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=15)
        raise AssertionError(f"{process.args!r} hung: {err[-2000:]}") from None
    return CliResult(process.returncode, out, err)


def pay_result(process: subprocess.Popen[str]) -> PayResult:
    done = finish(process)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return PayResult(done.code, json.loads(lines[-1]) if lines else None, done.stderr)


class ToPort(httpx.AsyncBaseTransport):
    """Sends each request to 127.0.0.1:``port`` whatever port its URL names, as a load balancer would.

    The request keeps its URL and ``Host`` header, so the payer sees one
    resource, and every paywall process behind it prices the same one.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        routed = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1", port=self.port),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self.inner.handle_async_request(routed)

    async def aclose(self) -> None:
        await self.inner.aclose()


def pay_here(
    fc: FaultChain, agent: Agent, url: str, *, port: int | None = None, task_id: str = "buy-one"
) -> PayResult:
    """The same purchase as :func:`pay`, made by this process: for tests where only the paywall dies.

    With ``port``, the request goes to the paywall process listening there
    (:class:`ToPort`), whatever port ``url`` names.
    """
    (result,) = pay_many_here(fc, [(agent, url, port)], task_id=task_id)
    return result


def pay_many_here(
    fc: FaultChain,
    purchases: Sequence[tuple[Agent, str, int | None]],
    *,
    task_id: str = "buy-one",
) -> list[PayResult]:
    """Several agents' purchases (agent, URL, port or None) at once, as :func:`pay_here` makes one."""

    async def everyone() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    buy(
                        Payer(
                            signer=agent.key,
                            chain=fc.chain,
                            asset=fc.asset,
                            books=agent.books,
                            settings=AgentSettings(
                                settle_retry_delay_s=0.2, read_timeout_s=PAYER_READ_TIMEOUT_S
                            ),
                        ),
                        {"task_id": task_id, "url": url, "marker": MARKER},
                        transport=ToPort(port) if port is not None else None,
                    )
                    for agent, url, port in purchases
                )
            )
        )

    for agent, _, _ in purchases:
        agent.books.start_task(task_id, 10 * PRICE_ATOMIC)
    return [PayResult(0, result, "") for result in asyncio.run(everyone())]


# ------------------------------------------------------------------ the recoveries


def agent_resolve(fc: FaultChain, agent: Agent) -> dict[str, Any]:
    """``farthing agent resolve --json``: possible spend from the chain, then reconciliation."""
    return agent_resolve_result(spawn_agent_resolve(fc, agent))


def spawn_agent_resolve(fc: FaultChain, agent: Agent) -> subprocess.Popen[str]:
    """Start :func:`agent_resolve`'s process; several may run at once (one per agent)."""
    argv = [
        "agent", "resolve", "--json", "--data-dir", str(agent.data_dir),
        "--rpc-url", fc.chain.rpc_url, "--token", fc.asset.address,
        "--database-url", agent.database_url,
    ]  # fmt: skip
    return zygote.spawn(
        [sys.executable, "-m", "farthing", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(agent.data_dir),
        cwd=REPO,
    )


def agent_resolve_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    done = finish(process)
    assert done.code in (0, 1), done.stderr[-2000:]  # 1: breaks found, reported in the JSON
    parsed: dict[str, Any] = done.json()
    return parsed


def paywall_resolve(fc: FaultChain, site: Site) -> dict[str, Any]:
    """``farthing paywall resolve --json``: the sweep of pending payments and unbooked revenue."""
    return paywall_resolve_result(spawn_paywall_resolve(fc, site))


def spawn_paywall_resolve(fc: FaultChain, site: Site) -> subprocess.Popen[str]:
    """Start :func:`paywall_resolve`'s process; several may run at once (one per site)."""
    argv = [
        "paywall", "resolve", "--json", "--rpc-url", fc.chain.rpc_url,
        "--database-url", site.store_url, "--ledger-database-url", site.revenue_url,
    ]  # fmt: skip
    return zygote.spawn(
        [sys.executable, "-m", "farthing", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(site.data_dir / "cli"),
        cwd=REPO,
    )


def paywall_resolve_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    done = finish(process)
    assert done.code == 0, done.stderr[-2000:]
    parsed: dict[str, Any] = done.json()
    return parsed


def agent_resolve_here(fc: FaultChain, agent: Agent) -> dict[str, Any]:
    """What ``farthing agent resolve --json`` does and says, done in this process.

    For tests whose subject is the paywall: the command itself runs in the
    agent-side tests, and a process start here would only cost time.
    """
    resolutions = resolve_possible_spend(agent.books, fc.chain, payer=agent.address)
    report = reconcile_books(agent.books, fc.chain, from_block=agent.start_block)
    return {
        "resolutions": [{"action": r.action, "result": r.result} for r in resolutions],
        "reconciliation_breaks": len(report.unresolved_breaks),
        "ledger_balanced": ledger_balanced(agent.database),
    }


# ------------------------------------------------------------------ the invariants


def authorizations_used(fc: FaultChain, agent: Agent) -> list[str]:
    """The nonces of every ``AuthorizationUsed`` the token logged for the agent's key."""
    topics = ["0x" + AUTHORIZATION_USED_TOPIC.hex(), address_topic(agent.address)]
    logs = fc.chain.logs(fc.asset.address, topics, agent.start_block)
    return ["0x" + log.topics[2].hex() for log in logs]


def assert_invariants(
    fc: FaultChain,
    site: Site,
    agent: Agent,
    runs: list[PayResult],
    *,
    delivered_before_crash: bool = False,
) -> None:
    """What must hold after any crash and its recovery, on both sides of the payment.

    ``delivered_before_crash``: the seller had sent 200 and the content to the
    payer's process before that process died (the agent's own crash after the
    answer arrived), so the content counts as delivered.
    """
    revenue = LedgerDatabase(LedgerSettings(database_url=site.revenue_url))
    store = PaymentStore(site.store_url)
    try:
        # Σdebits = Σcredits (posted and pending) and the audit chain verifies, both books.
        assert ledger_balanced(agent.database), "the agent's books do not balance"
        assert ledger_balanced(revenue), "the paywall's revenue books do not balance"
        # Ledger = chain for every address of ours: the agent's wallet, the merchant.
        mine = reconcile_books(agent.books, fc.chain, from_block=agent.start_block)
        assert mine.unresolved_breaks == (), mine.unresolved_breaks
        theirs = reconcile(
            revenue,
            TokenChainView(fc.chain, fc.asset),
            from_block=site.start_block,
            addresses=(site.merchant,),
        )
        assert theirs.unresolved_breaks == (), theirs.unresolved_breaks
        # Nothing settled twice: one purchase, at most one authorization used,
        # at most one transfer to the merchant.
        used = authorizations_used(fc, agent)
        moved = [
            e
            for e in fc.token.transfer_events(agent.start_block, addresses=[agent.address])
            if e.from_address.lower() == agent.address.lower()
        ]
        assert len(used) <= 1, f"settled {len(used)} times: {used}"
        assert len(moved) == len(used), (moved, used)
        assert all(e.to.lower() == site.merchant.lower() for e in moved)
        # The payer either got the content (and paid once) or kept the money.
        spent = AGENT_FUNDS - fc.token.balance_of(agent.address)
        delivered = delivered_before_crash or any(run.content for run in runs)
        assert (spent, delivered) in ((0, False), (PRICE_ATOMIC, True)), (
            f"spent {spent}, content delivered: {delivered}; runs: {[r.result for r in runs]}"
        )
        # The books say the same: the agent posted what it spent, nothing is left reserved.
        posted = sum(p.amount for p in booked_payments(agent.books) if p.state == "posted")
        assert posted == spent
        assert open_payments(agent.books) == [], "a reservation was left open"
        # The paywall left no claim and no pending settlement behind.
        for record in store.records():
            if record.key.payer == agent.address.lower():
                assert record.state in RESTING_STATES, record
    finally:
        store.dispose()
        revenue.dispose()
