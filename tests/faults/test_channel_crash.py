"""A payer or a paywall killed by SIGKILL anywhere on the batch-settlement path recovers: books balance and match the chain.

Every channel crash point is killed at in a real process on anvil:

* the paying agent (``channel_pay.py``, the agents' paying client buying
  through a channel from a real channel paywall, ``channel_server.py`` under
  uvicorn) dies after its deposit or voucher is signed and recorded, and
  after the seller's answer arrived but before it was booked; ``farthing
  agent channels withdraw`` and ``finalize`` die after their transaction;
* the paywall dies after a deposit landed on chain (``channel_server.py``);
  a real ``farthing paywall serve`` (its ``[channels]`` table, a short
  ``charge_lease_s``) dies after a voucher's charge was held and before its
  handler ran, and after the handler answered and before the answer was
  sent; ``farthing paywall claim`` dies after its claim and after its settle
  transaction.

Then the documented recovery runs: the agent's next purchase once the dead
process's channel lease has run out (it adopts the dead request: its deposit
is resolved from the chain or signed again byte for byte, its charge
re-presented), a second paywall process on the same stores for a paywall
that died, ``farthing paywall claim`` again (it catches up the books), and
``farthing agent channels reconcile --resolve`` for the withdrawal. Last,
every site's channels are claimed and settled.

Afterwards, for every story: the agent's books and the revenue books
balance and their audit logs verify; the agent's token reconciliation and
channel reconciliation, and the merchant's channel reconciliation, show no
break; nothing is reserved; one deposit per channel; each claim raised the
claimed total once; what the agent booked as charged equals what the
paywall charged; the agent's on-chain spend is what its books say it locked
less what came back; the merchant's balance is the cash its books hold; and
every charge is a delivered response: a paywall that dies between holding
a charge and sending its answer leaves a hold that lapses, so the payer's
retry of the same voucher is served and charged once (docs/reliability.md).

The stories are independent (an agent each; the paywall-side ones a site
each), so each phase runs for all of them at once; anvil's clock moves only
at the end, for the withdrawal. A run that selects some points (``-k``)
plays only their stories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from eth_abi.abi import decode as abi_decode

from farthing.agents.channels.books import booked_sums, open_deposits
from farthing.agents.channels.reconcile import reconcile_channels, resolve_channels
from farthing.agents.channels.store import list_channels
from farthing.agents.integrity import ledger_balanced, reconcile_books
from farthing.agents.payer import Payer
from farthing.agents.reservations import open_payments
from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS, ChannelEscrow
from farthing.paywall.schemes.batch_settlement.reconcile import reconcile_channel_books
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.wallet.chain import Call, address_topic
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from tests import zygote
from tests.conftest import cli_env
from tests.faults.channel_pay import channel_settings
from tests.faults.harness import (
    AGENT_FUNDS,
    PAYER_READ_TIMEOUT_S,
    PRICE_ATOMIC,
    READY_TIMEOUT_S,
    REPO,
    SIGKILLED,
    Agent,
    FaultChain,
    Site,
    finish,
    new_agent,
    new_site,
    ready_line,
    stop,
    stopping,
)

pytestmark = pytest.mark.anvil

CHANNEL_SERVER: Final = Path(__file__).with_name("channel_server.py")
CHANNEL_PAY: Final = Path(__file__).with_name("channel_pay.py")
LEASE_S: Final = 2.0  # the agent's channel lease: a dead buyer's runs out fast
LEASE_MARGIN_S: Final = 0.5
EARNED_QUIET_S: Final = (
    5.0 + 1.0
)  # farthing.paywall.schemes.batch_settlement.claims.EARNED_QUIET_S, and a margin
WITHDRAW_DELAY_S: Final = 900
AUTHORIZER: Final = 9  # anvil dev account that signs every site's claims (it sends nothing)
DEPOSIT_MULTIPLE: Final = 8
TASK_BUDGET: Final = 20 * PRICE_ATOMIC

# Every channel crash point, and its story: the process that dies, how many
# purchases its first run makes, how many of the agent's charges paid for a
# response that reached a process that then died (it was delivered), and how
# many paid for a response never delivered (none: a held charge lapses).
POINTS: Final = {
    "agent.channel_after_deposit_signed": ("agent", 1, 0, 0),
    "agent.channel_after_deposit_sent": ("agent", 1, 1, 0),
    "agent.channel_after_voucher_signed": ("agent", 2, 0, 0),
    "agent.channel_after_voucher_sent": ("agent", 2, 1, 0),
    "agent.channel_after_withdraw_sent": ("withdraw", 2, 0, 0),
    "agent.channel_after_finalize_sent": ("withdraw", 2, 0, 0),
    "paywall.channel_after_deposit": ("paywall", 1, 0, 0),
    "paywall.channel_after_charge": ("paywall", 1, 0, 0),
    "paywall.channel_after_handler": ("paywall", 1, 0, 0),
    "paywall.channel_after_claim": ("claim", 2, 0, 0),
    "paywall.channel_after_settle": ("claim", 2, 0, 0),
}
# The paying side's points share one healthy paywall; the withdrawal and
# finalize points are one agent's story (a withdrawal, then its finalize).
SHOP: Final = "shop"
WITHDRAW_STORY: Final = "agent.channel_after_withdraw_sent"
FINALIZE_STORY: Final = "agent.channel_after_finalize_sent"
SITE_RELAYERS: Final = {
    SHOP: 1,
    "paywall.channel_after_deposit": 2,
    "paywall.channel_after_charge": 4,
    "paywall.channel_after_handler": 7,
    "paywall.channel_after_claim": 5,
    "paywall.channel_after_settle": 6,
}
# The paywall-side points killed in a real `farthing paywall serve` process.
SERVED: Final = ("paywall.channel_after_charge", "paywall.channel_after_handler")
# The paywall's charge lease: shorter than the buyer's, so a dead request's
# hold has lapsed by the time the buyer's lease lets it retry.
CHARGE_LEASE_S: Final = 1.0


@dataclass
class Story:
    point: str
    agent: Agent
    site: Site
    runs: list[list[dict[str, Any]]] = field(default_factory=list)
    killed: list[int] = field(
        default_factory=list
    )  # exit codes of the processes armed at the point
    recovery: list[dict[str, Any]] = field(default_factory=list)  # --json of recovery commands


# ------------------------------------------------------------------ processes

_STARTED: list[subprocess.Popen[str]] = []  # buyers and commands, ended if a phase fails


def _track(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    _STARTED.append(process)
    return process


def _end_all() -> None:
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=15)


def authorizer_key_file(fc: FaultChain) -> Path:
    path = fc.work / "authorizer.key"
    if not path.exists():
        path.write_text(fc.chain.dev_accounts()[AUTHORIZER].private_key.get_secret_value())
        os.chmod(path, 0o600)
    return path


def spawn_server(
    fc: FaultChain, site: Site, relayer: int, *, crash_at: str | None = None
) -> subprocess.Popen[str]:
    config = {
        "rpc_url": fc.chain.rpc_url,
        "token": fc.asset.address,
        "merchant": site.merchant,
        "store_url": site.store_url,
        "revenue_url": site.revenue_url,
        "price": PRICE_ATOMIC,
        "relayer": relayer,
        "authorizer": AUTHORIZER,
        "withdraw_delay_s": WITHDRAW_DELAY_S,
    }
    extra = {"FARTHING_CRASH_AT": crash_at} if crash_at else {}
    log = (site.data_dir / f"server-{len(site.processes)}.log").open("w")
    with log:
        process = zygote.spawn(
            [sys.executable, str(CHANNEL_SERVER), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=cli_env(site.data_dir / "cli", **extra),
            cwd=REPO,
        )
    site.processes.append(process)
    return process


def spawn_serve(
    fc: FaultChain, site: Site, *, crash_at: str | None = None
) -> subprocess.Popen[str]:
    """``farthing paywall serve`` selling ``/api/**`` through channels only, on ``site``'s stores.

    Its ``[channels]`` table names the authorizer every site shares and a
    short ``charge_lease_s``; claims stay the tests' (``claim_every_s`` is
    far off, and no threshold is set).
    """
    config = site.data_dir / "paywall.toml"
    if not config.exists():
        config.write_text(
            "\n".join(
                [
                    "[[routes]]",
                    'path = "/api/**"',
                    'price = "0.01 USDC"',
                    'schemes = ["batch-settlement"]',
                    "[channels]",
                    f'receiver_authorizer_key_file = "{authorizer_key_file(fc)}"',
                    f"withdraw_delay_s = {WITHDRAW_DELAY_S}",
                    "claim_every_s = 86400",
                    f"charge_lease_s = {CHARGE_LEASE_S}",
                    "",
                ]
            )
        )
    argv = [
        sys.executable, "-m", "farthing", "paywall", "serve", "--json", "--config", str(config),
        "--upstream", fc.upstream_url, "--pay-to", site.merchant, "--token", fc.asset.address,
        "--rpc-url", fc.chain.rpc_url, "--key-file", str(site.key_file),
        "--database-url", site.store_url, "--ledger-database-url", site.revenue_url,
        "--port", "0",
    ]  # fmt: skip
    extra = {"FARTHING_CRASH_AT": crash_at} if crash_at else {}
    log = (site.data_dir / f"server-{len(site.processes)}.log").open("w")
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


def spawn_paywall_of(
    fc: FaultChain, site: Site, point: str, *, crash_at: str | None = None
) -> subprocess.Popen[str]:
    """The paywall process of ``point``'s site: ``farthing paywall serve`` or ``channel_server.py``."""
    if point in SERVED:
        return spawn_serve(fc, site, crash_at=crash_at)
    return spawn_server(fc, site, SITE_RELAYERS[point], crash_at=crash_at)


def server_url(site: Site, process: subprocess.Popen[str]) -> str:
    try:
        return str(ready_line(process, READY_TIMEOUT_S)["url"])
    except RuntimeError:
        stop(process)
        logs = [p.read_text()[-2000:] for p in sorted(site.data_dir.glob("server-*.log"))]
        raise RuntimeError(f"channel server did not start: {logs}") from None


def spawn_buyer(
    fc: FaultChain, agent: Agent, url: str, buys: int, *, crash_at: str | None = None
) -> subprocess.Popen[str]:
    config = {
        "database_url": agent.database_url,
        "rpc_url": fc.chain.rpc_url,
        "token": fc.asset.address,
        "url": f"{url}/api/data",
        "agent_id": "agent",
        "task_id": "reading",
        "task_budget": TASK_BUDGET,
        "marker": "paid-data",
        "timeout_s": PAYER_READ_TIMEOUT_S,
        "buys": buys,
        "channel_lease_s": LEASE_S,
        "channel_deposit_multiple": DEPOSIT_MULTIPLE,
    }
    env = cli_env(
        agent.data_dir,
        FARTHING_TEST_AGENT_KEY=agent.key.private_key.get_secret_value(),
        PYTHONPATH=str(REPO),  # it imports tests.faults.pay_once
    )
    if crash_at:
        env["FARTHING_CRASH_AT"] = crash_at
    return _track(
        zygote.spawn(
            [sys.executable, str(CHANNEL_PAY), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
    )


def buyer_runs(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]]]:
    done = finish(process)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.code in (0, SIGKILLED), done.stderr[-3000:]
    return done.code, lines


def spawn_cli(
    args: list[str], data_dir: Path, *, crash_at: str | None = None
) -> subprocess.Popen[str]:
    extra = {"FARTHING_CRASH_AT": crash_at} if crash_at else {}
    return _track(
        zygote.spawn(
            [sys.executable, "-m", "farthing", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(data_dir, **extra),
            cwd=REPO,
        )
    )


def cli_json(process: subprocess.Popen[str], *codes: int) -> tuple[int, dict[str, Any]]:
    """A CLI's exit code and its ``--json`` (empty when it was killed)."""
    done = finish(process)
    assert done.code in (codes or (0,)), (done.code, done.stderr[-3000:])
    return done.code, (done.json() if done.code == 0 else {})


def spawn_claim(
    fc: FaultChain, site: Site, *, crash_at: str | None = None
) -> subprocess.Popen[str]:
    args = [
        "paywall", "claim", "--json", "--rpc-url", fc.chain.rpc_url,
        "--authorizer-key-file", str(authorizer_key_file(fc)), "--key-file", str(site.key_file),
        "--database-url", site.store_url, "--ledger-database-url", site.revenue_url,
    ]  # fmt: skip
    return spawn_cli(args, site.data_dir / "cli", crash_at=crash_at)


def spawn_agent_channels(
    fc: FaultChain, agent: Agent, *args: str, crash_at: str | None = None
) -> subprocess.Popen[str]:
    argv = [
        "agent", "channels", *args, "--json", "--rpc-url", fc.chain.rpc_url,
        "--token", fc.asset.address, "--database-url", agent.database_url,
    ]  # fmt: skip
    return spawn_cli(argv, agent.data_dir, crash_at=crash_at)


def payer_of(fc: FaultChain, agent: Agent) -> Payer:
    settings = channel_settings(
        {"timeout_s": PAYER_READ_TIMEOUT_S, "channel_lease_s": LEASE_S,
         "channel_deposit_multiple": DEPOSIT_MULTIPLE}
    )  # fmt: skip
    return Payer(
        signer=agent.key, chain=fc.chain, asset=fc.asset, books=agent.books, settings=settings
    )


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# ------------------------------------------------------------------ the stories


def selected_points(request: pytest.FixtureRequest) -> frozenset[str]:
    """The points this session runs (``-k`` may pick a few): only their stories are played."""
    chosen = {
        item.callspec.params["point"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.module is sys.modules[__name__]
        and hasattr(item, "callspec")
    }
    if chosen & {WITHDRAW_STORY, FINALIZE_STORY}:
        chosen |= {WITHDRAW_STORY, FINALIZE_STORY}  # one story, two points
    return frozenset(chosen or POINTS)


@pytest.fixture(scope="module")
def stories(fault_chain: FaultChain, request: pytest.FixtureRequest) -> Iterator[dict[str, Story]]:
    fc = fault_chain
    place_channel_contracts(fc.chain)
    wanted = selected_points(request)
    active = [p for p in POINTS if p in wanted and p != FINALIZE_STORY]
    with ExitStack() as stack:
        stack.callback(_end_all)
        used = {p if p in SITE_RELAYERS else SHOP for p in active}
        sites = {
            name: stack.enter_context(
                stopping(new_site(fc, fc.work / name.replace(".", "-"), relayer_index=relayer))
            )
            for name, relayer in SITE_RELAYERS.items()
            if name in used
        }
        stories: dict[str, Story] = {}
        for point in active:
            site = sites[point] if point in sites else sites[SHOP]
            agent = new_agent(fc, fc.work / point.replace(".", "-") / "agent")
            stories[point] = Story(point, agent, site)
        withdrawing = stories.get(WITHDRAW_STORY)
        if withdrawing is not None:
            stories[FINALIZE_STORY] = withdrawing
            # The withdrawal and its finalize are the agent's own transactions: it pays their gas.
            gas = Call(withdrawing.agent.address, b"", value=10**18)
            assert fc.chain.send(gas, sender=fc.owner).ok

        # Phase 1: the paywalls (three armed, each with a standby on its stores), then every first purchase.
        armed_servers = {
            p: spawn_paywall_of(fc, sites[p], p, crash_at=p)
            for p in ("paywall.channel_after_deposit", *SERVED)
            if p in wanted
        }
        healthy = {
            name: spawn_server(fc, sites[name], SITE_RELAYERS[name])
            for name in (SHOP, "paywall.channel_after_claim", "paywall.channel_after_settle")
            if name in sites
        }
        urls = {p: server_url(sites[p], s) for p, s in armed_servers.items()}
        urls |= {name: server_url(sites[name], s) for name, s in healthy.items()}
        # Started once the first has made the tables (two processes creating them at once race).
        standby = {p: spawn_paywall_of(fc, sites[p], p) for p in armed_servers}
        firsts = {}
        for point in active:
            who, buys, _, _ = POINTS[point]
            story = stories[point]
            url = urls[point] if point in urls else urls[SHOP]
            armed = point if who == "agent" else None
            firsts[point] = spawn_buyer(fc, story.agent, url, buys, crash_at=armed)
        for point, process in firsts.items():
            code, lines = buyer_runs(process)
            stories[point].runs.append(lines)
            if POINTS[point][0] == "agent":
                stories[point].killed.append(code)
        for point, process in armed_servers.items():
            try:
                stories[point].killed.append(process.wait(timeout=60))
            except subprocess.TimeoutExpired:
                logs = [p.read_text()[-3000:] for p in stories[point].site.data_dir.glob("*.log")]
                raise AssertionError(
                    f"{point}: alive; runs {stories[point].runs}; {logs}"
                ) from None
        lease_over = time.monotonic() + LEASE_S + LEASE_MARGIN_S
        retry_urls = {p: server_url(sites[p], s) for p, s in standby.items()}

        # Phase 2: the commands that die (claims, the withdrawal).
        claim_points = [
            p
            for p in ("paywall.channel_after_claim", "paywall.channel_after_settle")
            if p in wanted
        ]
        dying = {p: spawn_claim(fc, sites[p], crash_at=p) for p in claim_points}
        if withdrawing is not None:
            (channel,) = list_channels(withdrawing.agent.books)
            dying[WITHDRAW_STORY] = spawn_agent_channels(
                fc, withdrawing.agent, "withdraw", channel.channel_id, crash_at=WITHDRAW_STORY
            )
        for point, process in dying.items():
            code, _ = cli_json(process, SIGKILLED)
            stories[point].killed.append(code)

        # Phase 3: the recoveries. The dead buyers' leases must have run out.
        wait_until(lease_over)
        retries = {
            p: spawn_buyer(fc, stories[p].agent, retry_urls.get(p) or urls[SHOP], 1)
            for p in active
            if POINTS[p][0] in ("agent", "paywall")
        }
        recovering = {p: spawn_claim(fc, sites[p]) for p in claim_points}
        if withdrawing is not None:
            recovering[WITHDRAW_STORY] = spawn_agent_channels(
                fc, withdrawing.agent, "reconcile", "--resolve"
            )
        for point, process in retries.items():
            _, lines = buyer_runs(process)
            stories[point].runs.append(lines)
        retried_at = time.monotonic()
        for point, process in recovering.items():
            stories[point].recovery.append(cli_json(process)[1])

        # Phase 4: every site claims and settles what its channels earned (a
        # dead charge is booked as earned once its channel is idle).
        wait_until(retried_at + EARNED_QUIET_S)
        claims = {name: spawn_claim(fc, site) for name, site in sites.items()}
        for name, process in claims.items():
            _, report = cli_json(process)
            assert report["failures"] == [], (name, report)

        # Phase 5: the withdrawal's delay passes; finalize dies after its
        # transaction; the reconciliation books what it returned.
        if withdrawing is not None:
            fc.chain.advance_time(WITHDRAW_DELAY_S + 1)
            code, _ = cli_json(
                spawn_agent_channels(
                    fc, withdrawing.agent, "finalize", channel.channel_id, crash_at=FINALIZE_STORY
                ),
                SIGKILLED,
            )
            withdrawing.killed.append(code)
            withdrawing.recovery.append(
                cli_json(spawn_agent_channels(fc, withdrawing.agent, "reconcile", "--resolve"))[1]
            )
        # The other agents' recovery command (in this process: it is the same code).
        for point, story in stories.items():
            if story is not withdrawing and POINTS[point][0] != "withdraw":
                resolve_channels(payer_of(fc, story.agent))
        yield stories


# ------------------------------------------------------------------ the checks


def escrow_logs(fc: FaultChain, name: str, channel_id: str) -> list[Any]:
    return fc.chain.logs(
        CANONICAL_CHANNEL_CONTRACTS.settlement,
        [ESCROW_EVENT_TOPICS[name], bytes.fromhex(channel_id[2:])],
        0,
    )


def amounts(logs: list[Any]) -> int:
    return sum(int(abi_decode(["uint128"], entry.data[:32])[0]) for entry in logs)


def assert_channel_invariants(fc: FaultChain, story: Story) -> None:
    agent, site = story.agent, story.site
    payer = payer_of(fc, agent)
    # The agent's books: balanced, audit verified, = the token's transfers, = the escrow's events.
    assert ledger_balanced(agent.database), "the agent's books do not balance"
    token_report = reconcile_books(agent.books, fc.chain, from_block=agent.start_block)
    assert token_report.unresolved_breaks == (), token_report.unresolved_breaks
    assert reconcile_channels(payer) == []
    assert open_payments(agent.books) == [], "a charge was left reserved"
    (channel,) = list_channels(agent.books)
    assert open_deposits(agent.books, channel.channel_id) == [], "a deposit was left reserved"
    assert channel.inflight_id is None
    # One deposit, and the agent's on-chain spend is what its books locked less what came back.
    deposited = escrow_logs(fc, "Deposited", channel.channel_id)
    assert len(deposited) == 1, f"{len(deposited)} deposits"
    returned = escrow_logs(fc, "Refunded", channel.channel_id) + escrow_logs(
        fc, "WithdrawFinalized", channel.channel_id
    )
    booked_in, booked_back, charged = booked_sums(agent.books, channel.channel_id)
    spent_on_chain = AGENT_FUNDS - fc.token.balance_of(agent.address)
    assert (booked_in, booked_back) == (amounts(deposited), amounts(returned))
    assert spent_on_chain == booked_in - booked_back
    # The budget was never overspent: the charges are the budget's spend, within the task's budget.
    status = agent.books.status("reading")
    assert status.spent == charged <= TASK_BUDGET and status.reserved == 0, status
    # The paywall's side: what it charged on this channel is what the agent booked.
    revenue = LedgerDatabase(LedgerSettings(database_url=site.revenue_url))
    store = ChannelStore(
        site.store_url,
        domain=ChannelDomain(fc.chain.chain_id),
        network=fc.chain.network,
        escrow=ChannelEscrow(fc.chain),
    )
    try:
        (record,) = [r for r in store.records() if "0x" + r.channel_id.hex() == channel.channel_id]
        assert record.charged == charged, (record.charged, charged)
        assert record.held == 0, "a charge was left held"
        assert ledger_balanced(revenue), "the revenue books do not balance"
        report = reconcile_channel_books(store, LedgerRevenueBook(revenue))
        assert report.breaks == (), report.breaks
        # Each claim raised the claimed total once; all of it was claimed and settled.
        claimed = escrow_logs(fc, "Claimed", channel.channel_id)
        totals = [int(abi_decode(["uint128", "uint128"], e.data)[1]) for e in claimed]
        assert totals == sorted(set(totals)), f"claimed twice: {totals}"
        _, total_claimed = ChannelEscrow(fc.chain).channel(bytes.fromhex(channel.channel_id[2:]))
        assert sum(int(abi_decode(["uint128", "uint128"], e.data)[0]) for e in claimed) == (
            total_claimed
        )
        assert total_claimed == charged
        assert report.receivables.get(channel.channel_id, 0) == 0
    finally:
        store.dispose()
        revenue.dispose()


def merchant_cash_is_the_chain(fc: FaultChain, site: Site) -> None:
    """The merchant's token balance is the cash its channel books received (settled)."""
    revenue = LedgerDatabase(LedgerSettings(database_url=site.revenue_url))
    store = ChannelStore(
        site.store_url,
        domain=ChannelDomain(fc.chain.chain_id),
        network=fc.chain.network,
        escrow=ChannelEscrow(fc.chain),
    )
    try:
        report = reconcile_channel_books(store, LedgerRevenueBook(revenue))
        assert report.breaks == ()
        settled = amounts(
            fc.chain.logs(
                CANONICAL_CHANNEL_CONTRACTS.settlement,
                [ESCROW_EVENT_TOPICS["Settled"], address_topic(site.merchant)],
                0,
            )
        )
        assert fc.token.balance_of(site.merchant) == settled
    finally:
        store.dispose()
        revenue.dispose()


@pytest.mark.parametrize("point", list(POINTS))
def test_channel_crash_point_recovers(
    point: str, fault_chain: FaultChain, stories: dict[str, Story]
) -> None:
    story = stories[point]
    who, first_buys, delivered_to_dead, lost = POINTS[point]
    killed = story.killed[1] if point == "agent.channel_after_finalize_sent" else story.killed[0]
    assert killed == SIGKILLED, f"nothing died at {point}"
    first, *later = story.runs
    if who == "agent":
        # Killed during its last purchase: the ones before it were paid.
        assert [r["outcome"] for r in first] == ["paid"] * (first_buys - 1), first
    elif who == "paywall":
        # The paywall died under the request: the answer never came; possible spend.
        assert [(r["outcome"], r["content"]) for r in first] == [("possible_spend", False)], first
    else:
        assert [(r["outcome"], r["content"]) for r in first] == [("paid", True)] * first_buys
    for run in later:
        assert [(r["outcome"], r["content"]) for r in run] == [("paid", True)], run
    if who == "withdraw":
        (after_withdraw, after_finalize) = story.recovery
        assert after_withdraw["breaks"] == [] and after_finalize["breaks"] == []
        assert ["withdrawing"] == [r["action"] for r in after_withdraw["resolutions"]]
        assert {"refund_booked", "closed"} <= {r["action"] for r in after_finalize["resolutions"]}
        (channel,) = list_channels(story.agent.books)
        assert channel.status == "closed"
    if who == "claim":
        (again,) = story.recovery
        assert again["failures"] == []
        assert again["booked"]["claims"] >= 1 and again["booked"]["settles"] >= 1, again
    assert_channel_invariants(fault_chain, story)
    # Every charge paid for a response: delivered to a live run, or delivered
    # to a process that then died. A paywall that died between holding a
    # charge and sending its answer charged nothing for it.
    contents = sum(r["content"] for run in story.runs for r in run)
    _, _, charged = booked_sums(story.agent.books, list_channels(story.agent.books)[0].channel_id)
    assert charged == PRICE_ATOMIC * (contents + delivered_to_dead + lost), (charged, contents)
    merchant_cash_is_the_chain(fault_chain, story.site)
