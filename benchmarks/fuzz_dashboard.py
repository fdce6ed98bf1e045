"""Structure-aware fuzzing of the dashboard's HTTP API: no 5xx, no crash, no unauthorized change.

Two targets over the same real SQLite books, each the real ``create_app``
driven directly as ASGI (no sockets, so odd methods, paths and headers reach
the app as a server would hand them over):

* ``login``: credentials configured (ada approves, vic only views);
* ``local``: loopback without credentials, where the local user approves.

Every case is built from structured parts by ``random.Random(f"{seed}/{index}")``
(so ``--only INDEX`` replays one): a method (any case, odd tokens), a path
(each route, with wrong ids and verbs, dot segments, encoded bytes, unicode,
long and doubled segments, and a query), a ``Host`` (ours, a rebinding
attacker's, malformed, duplicated or missing), cookies (none, a real session
of either role, the login form's cookie, garbage, oversized) and a body
(a form with the right, wrong or another session's CSRF token, right or wrong
passwords, oversized forms, JSON nested past any bound, binary, bodies in
several chunks, lying ``content-length``).

After each case the fuzzer compares what the case could have changed: the
audit log's length, the pending approvals, the server's sessions and whether
the fuzzer's own sessions still work. A change is allowed only for a case
that carried a valid session and its CSRF token (with the approver role for
approving, denying and reconciling), or a valid login form with a right
password; any other change is ``unauthorized_state_changes``. A status of
500 or more is ``status_5xx``, an exception out of the app is a crash, and a
case that does not finish within ``--timeout-s`` is a hang. The first few
offending cases go to stderr, and the last stdout line is one JSON object.
The exit status is 1 when any case failed.

    python benchmarks/fuzz_dashboard.py [--cases 100000] [--seed 1] [--only INDEX]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlencode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fuzzing
from sqlalchemy import select

from farthing.agents.approvals import request_approval
from farthing.agents.tables import agent_approval
from farthing.dashboard import DashboardSettings, create_app, hash_password
from farthing.dashboard.app import COOKIE_NAME, LOGIN_COOKIE_NAME
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.ledger.tables import AuditEntry, table_of
from farthing.wallet.money import Asset

PASSWORDS: Final = {"ada": "ada's fuzz passphrase", "vic": "vic's fuzz passphrase"}
ROLES: Final = {"ada": "approver", "vic": "viewer"}
PORT: Final = 8700
GOOD_HOSTS: Final = ("127.0.0.1:8700", "localhost:8700", "[::1]:8700", "LOCALHOST", "127.0.0.1",
                      "localhost.")  # fmt: skip
BAD_HOSTS: Final = ("rebind.evil.example", "rebind.evil.example:8700", "", "127.0.0.1:99999",
                    "evil@127.0.0.1", "127.0.0.1/x", "[::1", "127.0.0.2", "0.0.0.0",
                    "x" * 2000, "local host", "127.0.0.1 :8700")  # fmt: skip
PENDING_KEPT: Final = 3
_CSRF: Final = re.compile(r'name="csrf_token" value="([^"]+)"')
_entries = table_of(AuditEntry)
_PENDING: Final = "SELECT count(*) FROM agent_approval WHERE status = 'pending'"
_STATE: Final = f"SELECT (SELECT count(*) FROM {_entries.name}), ({_PENDING})"


# ---------------------------------------------------------------- raw ASGI


async def call(app: Any, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
               chunks: list[bytes], client: tuple[str, int] | None,
               timeout_s: float = 60.0) -> fuzzing.Outcome:  # fmt: skip
    """One request as a server hands it over: decoded ``path``, untouched ``raw_path``."""
    path_part, _, query = target.partition(b"?")
    scope = fuzzing.scope_of(method, path_part, query, headers, client=client, port=PORT)
    return await fuzzing.drive(app, scope, chunks, timeout_s)


def cookie_of(answer: fuzzing.Outcome, name: str) -> str | None:
    for key, value in answer.headers:
        if key == b"set-cookie" and value.startswith(name.encode() + b"="):
            return value.split(b";", 1)[0].split(b"=", 1)[1].decode()
    return None


def csrf_in(answer: fuzzing.Outcome) -> str | None:
    found = _CSRF.search(answer.body.decode("utf-8", "replace"))
    return found.group(1) if found else None


# ---------------------------------------------------------------- the world


@dataclass
class Credentials:
    token: str
    csrf: str
    role: str


@dataclass
class Target:
    name: str
    app: Any
    sessions: dict[str, Credentials] = field(default_factory=dict)
    login_cookie: str = ""
    login_token: str = ""


class World:
    def __init__(self, folder: Path) -> None:
        url = f"sqlite:///{folder / 'books.sqlite'}"
        self.raw: sqlite3.Connection | None = None
        self.database = LedgerDatabase(LedgerSettings(database_url=url))
        upgrade_database(self.database)
        users = ";".join(
            f"{n} {ROLES[n]} {hash_password(p, n=2**10)}" for n, p in PASSWORDS.items()
        )
        self.asset = Asset(network="eip155:31337", address="0x" + "11" * 20, decimals=6,
                           name="USDC", version="2")  # fmt: skip
        common = {"database_url": url, "session_count_max": 1_000_000,
                  "login_attempts_per_minute_max": 10}  # fmt: skip
        self.targets = {
            "login": Target(
                "login", create_app(DashboardSettings(users=users, **common), start_verifier=False)
            ),
            "local": Target("local", create_app(DashboardSettings(**common), start_verifier=False)),
        }
        self.pending_ids: list[int] = []
        self.keep_pending()
        # The state is read after every case: one plain query, not an ORM session.
        self.raw = sqlite3.connect(folder / "books.sqlite", isolation_level=None)

    def keep_pending(self) -> None:
        if self.raw is not None:
            found = self.raw.execute(_PENDING).fetchone()[0]
            if found == len(self.pending_ids) >= PENDING_KEPT:
                return
        with self.database.read() as s:
            rows = s.execute(
                select(agent_approval.c.id).where(agent_approval.c.status == "pending")
            )
            self.pending_ids = [int(r[0]) for r in rows]
        while len(self.pending_ids) < PENDING_KEPT:
            made = request_approval(self.database, agent_id="bot", asset=self.asset, amount=250_000,
                                    pay_to="0x" + "22" * 20, resource="https://blog.example/p")  # fmt: skip
            self.pending_ids.append(made.id)

    async def ready(self, target: Target) -> None:
        """The fuzzer's own sessions, and the login form's cookie and token, as a browser gets them."""
        host = [(b"host", b"127.0.0.1:8700")]
        client = ("127.0.0.1", 1)
        if target.name == "local":
            known = target.sessions.get("local")
            if known is None or not self.alive(target, known.token):
                page = await call(target.app, "GET", b"/audit", host, [], client)
                token = cookie_of(page, COOKIE_NAME)
                if token is None or page.status != 200:
                    raise RuntimeError(f"the local operator has no session ({page.status})")
                target.sessions["local"] = Credentials(token, csrf_in(page) or "", "approver")
            return
        if not target.login_token:
            form = await call(target.app, "GET", b"/login", host, [], client)
            target.login_cookie = cookie_of(form, LOGIN_COOKIE_NAME) or ""
            target.login_token = csrf_in(form) or ""
        for name, role in ROLES.items():
            known = target.sessions.get(name)
            if known is None or not self.alive(target, known.token):
                # Straight into the store: the cases may have limited this account's logins.
                made = target.app.state.sessions.new(user=name, role=role)
                target.sessions[name] = Credentials(made.token, made.csrf, role)

    @staticmethod
    def alive(target: Target, token: str) -> bool:
        return target.app.state.sessions.get(token) is not None

    def state(self, target: Target) -> tuple[Any, ...]:
        assert self.raw is not None
        audit, pending = self.raw.execute(_STATE).fetchone()
        own = tuple(self.alive(target, c.token) for c in target.sessions.values())
        count = len(target.app.state.sessions) if target.name == "login" else 0
        return (audit, pending, count, own)


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    index: int
    target: str
    method: str
    target_bytes: bytes
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    client: tuple[str, int] | None
    authorized: bool

    def short(self) -> str:
        return json.dumps({"index": self.index, "target": self.target, "method": self.method,
                           "path": self.target_bytes[:200].decode("latin-1"),
                           "headers": [(k.decode(), v[:120].decode("latin-1"))
                                       for k, v in self.headers],
                           "body": b"".join(self.chunks)[:300].decode("latin-1")})  # fmt: skip


EXPORTS: Final = ("spend", "revenue", "paywall_revenue", "per_minute", "approvals", "breaks",
                  "audit", "agent-payments", "nope", "")  # fmt: skip
ACTIONS: Final = {"/reconciliation/run": True, "/audit/verify": False, "/logout": False}


def a_path(rng: random.Random, world: World) -> str:
    ids = [*world.pending_ids, 0, 999_999, rng.randrange(10**20)]
    pick = rng.random()
    if pick < 0.3:
        approval = rng.choice([str(rng.choice(ids)), "abc", "-1", "1e3", "%31", "１", "9" * 30])
        verb = rng.choice(["approve", "deny", "APPROVE", "cancel", "approve/", ""])
        path = f"/approvals/{approval}/{verb}"
    elif pick < 0.45:
        path = rng.choice([*ACTIONS, "/login"])
    else:
        path = rng.choice([
            "/", "/api/live", "/approvals", "/reconciliation", "/audit", "/healthz", "/login",
            "/static/live.js", "/static/dashboard.css", "/static/../app.py", "/static/%2e%2e/app.py",
            f"/agents/{rng.choice(['bot', 'nobody', '../../etc/passwd', 'a' * 3000, '%00', 'é'])}",
            "/export/" + rng.choice(EXPORTS) + "." + rng.choice(["csv", "json", "xml", "", "a.json"]),
        ])  # fmt: skip
    mutation = rng.random()
    if mutation < 0.08:
        path = path.replace("/", "//", 1)
    elif mutation < 0.14:
        path = path + rng.choice(["/", "/.", "/..", "%2F", "?", "#x", "/%2e%2e/login"])
    elif mutation < 0.18:
        path = "".join(quote(c, safe="") if rng.random() < 0.3 else c for c in path)
    elif mutation < 0.2:
        path = rng.choice(["*", "", "login", "http://evil.example/", "/\x00", "/" + "é" * 50])
    if rng.random() < 0.25:
        path += "?" + rng.choice([
            "next=//evil.example", "message=<script>alert(1)</script>", "agent=bot",
            "agent=" + "x" * 5000, "a=%ff%fe", "&&&=", "message=" + "%" * 10,
        ])  # fmt: skip
    return path


def a_case(index: int, seed: int, world: World) -> Case:
    rng = random.Random(f"{seed}/{index}")
    target = world.targets[rng.choice(["login", "login", "local"])]
    path = a_path(rng, world)
    route = path.split("?")[0]
    acts = route in ACTIONS or route == "/login" or route.startswith("/approvals/")
    if rng.random() < 0.8:
        method = "POST" if acts else "GET"
    else:
        method = rng.choice(["GET", "POST", "post", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH",
                             "FOO", "G\x00T", ""])  # fmt: skip
    host_ok = rng.random() < 0.85
    headers: list[tuple[bytes, bytes]] = []
    if host_ok:
        headers.append((b"host", rng.choice(GOOD_HOSTS).encode()))
    elif rng.random() < 0.8:
        headers.append((b"host", rng.choice(BAD_HOSTS).encode("latin-1")))
    else:
        headers += [(b"host", b"127.0.0.1:8700"), (b"host", b"rebind.evil.example")]
    sessions = list(target.sessions.values())
    who = rng.choice([None, *sessions, *sessions]) if sessions else None
    cookies: list[str] = []
    if who is not None:
        cookies.append(f"{COOKIE_NAME}={who.token}")
    roll = rng.random()
    if roll < 0.15:
        cookies.append(
            f"{COOKIE_NAME}={rng.choice(['x', 'a' * 5000, '', '%00', who.csrf if who else 'y'])}"
        )
    elif roll < 0.35 and target.login_cookie:
        cookies.append(f"{LOGIN_COOKIE_NAME}={target.login_cookie}")
    elif roll < 0.4:
        cookies.append(f"{LOGIN_COOKIE_NAME}={rng.choice(['forged', 'b' * 500, ''])}")
    if cookies:
        rng.shuffle(cookies)
        headers.append((b"cookie", "; ".join(cookies).encode("latin-1")))
    csrf = (who.csrf if who is not None and rng.random() < 0.5 else rng.choice([
        target.login_token, "", "wrong", *(c.csrf for c in sessions), who.token if who else "z",
    ]))  # fmt: skip
    user = rng.choice(["ada", "vic", "ghost", "", "a" * 200, "ada\x00", "ADA"])
    password = (
        PASSWORDS.get(user, "") if rng.random() < 0.2 else rng.choice(["guess", "", "é" * 40])
    )
    fields = {"csrf_token": csrf, "user": user, "password": password,
              "note": rng.choice(["", "ok", "<b>x</b>", "n" * 1000])}  # fmt: skip
    kind = rng.random()
    if kind < 0.7:
        body = urlencode({k: v for k, v in fields.items() if rng.random() < 0.9}).encode()
        ctype = b"application/x-www-form-urlencoded"
    elif kind < 0.8:
        depth = rng.choice([1, 5, 40, 5000])
        body = b"[" * depth + json.dumps(fields).encode() + b"]" * depth
        ctype = b"application/json"
    elif kind < 0.87:
        body = b"csrf_token=" + csrf.encode() + b"&pad=" + b"p" * rng.choice([17_000, 100_000])
        ctype = b"application/x-www-form-urlencoded"
    elif kind < 0.94:
        body = rng.randbytes(rng.choice([1, 100, 3000]))
        ctype = rng.choice([b"application/x-www-form-urlencoded", b"multipart/form-data", b""])
    else:
        body = b"&".join(b"f%d=%d" % (i, i) for i in range(rng.choice([21, 500])))
        ctype = b"application/x-www-form-urlencoded"
    if ctype:
        headers.append((b"content-type", ctype))
    declared = rng.random()
    if declared < 0.7:
        headers.append((b"content-length", str(len(body)).encode()))
    elif declared < 0.8:
        headers.append((b"content-length", rng.choice([b"0", b"5", b"-1", b"99999999", b"x"])))
    split = rng.randrange(1, 4)
    step = max(1, len(body) // split)
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    client = None if rng.random() < 0.02 else (f"10.{rng.randrange(256)}.{rng.randrange(256)}.1", 5)
    authorized = False
    if host_ok and method == "POST" and len(body) <= 16 * 1024 and kind < 0.7:
        sent = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        # As the server reads a Cookie header: of repeated names, the last one counts.
        seen = dict(c.split("=", 1) for c in cookies)
        holder = next((c for c in sessions if c.token == seen.get(COOKIE_NAME)), None)
        if holder is not None and sent.get("csrf_token") == holder.csrf:
            needs_approver = route == "/reconciliation/run" or route.startswith("/approvals/")
            authorized = holder.role == "approver" or not needs_approver
        login_ok = sent.get("csrf_token") == target.login_token != ""
        if route == "/login" and login_ok and seen.get(LOGIN_COOKIE_NAME) == target.login_cookie:
            authorized = True  # a real login by whoever knows the password
    return Case(index, target.name, method, path.encode("utf-8", "surrogatepass"), headers,
                chunks, client, authorized)  # fmt: skip


# ---------------------------------------------------------------- the run


@dataclass
class Tally(fuzzing.Tally):
    authorized_state_changes: int = 0  # allowed, and counted to show the oracle sees them


async def run_cases(world: World, indexes: range | list[int], args: argparse.Namespace) -> Tally:
    tally = Tally()
    progress = fuzzing.Progress("fuzz_dashboard", len(indexes))
    shown = fuzzing.Shown(args.show, args.only is not None)
    for index in indexes:
        for target in world.targets.values():
            await world.ready(target)
        world.keep_pending()
        case = a_case(index, args.seed, world)
        target = world.targets[case.target]
        before = world.state(target)
        answer = await call(target.app, case.method, case.target_bytes, case.headers,
                            case.chunks, case.client, args.timeout_s)  # fmt: skip
        found = []
        tally.cases += 1
        if answer.error == "hang":
            found.append("hang")
        elif answer.error is not None:  # a crash is what the fuzzer looks for
            found.append("crash")
        else:
            tally.statuses[f"{case.target}:{answer.status}"] += 1
            if answer.status >= 500:
                found.append("status_5xx")
        after = world.state(target)
        if after != before and case.authorized:
            tally.authorized_state_changes += 1
        elif after != before:
            found.append("unauthorized_state_change")
        for failure in found:
            tally.failures[failure] += 1
            if shown.due(failure):
                body = bytes(answer.body[:300])
                detail = f"{case.short()} state {before} -> {after}"
                fuzzing.show_found(failure, detail, answer.status, body, answer.error)
        failures = tally.failures
        progress.tick(
            tally.cases,
            f"{failures['status_5xx']} 5xx, {failures['crash']} crashes, "
            f"{failures['unauthorized_state_change']} unauthorized",
        )
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz the dashboard's HTTP API.")
    fuzzing.add_case_arguments(parser, timeout_s=30.0)
    args = parser.parse_args()
    indexes = fuzzing.case_indexes(parser, args)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-dashboard-") as folder:
        world = World(Path(folder))
        try:
            tally = asyncio.run(run_cases(world, indexes, args))
        finally:
            world.database.dispose()
    found = tally.failures
    report = {
        "bench": "fuzz_dashboard", "cases": tally.cases, "seed": args.seed,
        "status_5xx": found["status_5xx"], "crashes": found["crash"], "hangs": found["hang"],
        "unauthorized_state_changes": found["unauthorized_state_change"],
        "authorized_state_changes": tally.authorized_state_changes,
        "statuses": dict(sorted(tally.statuses.items())),
        "elapsed_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    failed = sum(found.values())
    return fuzzing.finish(report, failed > 0)


if __name__ == "__main__":
    sys.exit(main())
