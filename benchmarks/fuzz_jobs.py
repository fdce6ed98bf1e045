"""Structure-aware fuzzing of the jobs page's HTTP API: no 5xx, no crash, no unauthorized state change.

The target is ``farthing.jobs.server.create_app`` as ``farthing jobs serve``
builds it (public URL set, so sign-in is on; the host guard in front), over a
real :class:`JobService` on the in-process memory chain (our auth-capture
escrow, a real SQLite ledger), driven directly as ASGI: no sockets, fast.

Every case is built from structured parts: the ``Host`` (ours, loopback,
foreign, empty, doubled), the method (any case, odd tokens), the path (every
route, with job ids that exist, do not, are huge, negative, not digits,
percent-encoded), the credentials (none, a valid bearer token or cookie of a
signed-in worker, another server's token, an expired one, garbage; a CSRF
token that is right, wrong, or another session's), the content type, and the
body: JSON objects for accept, deliver and sign-in with mutated fields and
types, strings with lone surrogates, bodies nested 33, 1,000 and 100,000
deep, huge, not UTF-8, ``NaN``, 5,000-digit numbers, forms with and without
the token, and real signed sign-ins (some replayed, some altered), sent in one
piece or several. All parts come from ``random.Random(f"{seed}/{index}")``,
so ``--only INDEX`` replays one case (keys and tokens are fresh each run).

Three things are counted. ``status_5xx``: any status of 500 or more.
``crashes``: an exception out of the app, a response started twice, or a
case that does not finish within ``--timeout-s``; a crash of the process
itself (the SIGSEGV this fuzzer was written for) ends the run without its
JSON line, and faulthandler prints where. ``unauthorized_state_changes``:
the jobs (state, worker, delivery, held, captured) are read before and after
every case, and any change by a case that lacked a valid session (and, for a
form, the session's CSRF token; for a cookie on the API, a JSON body; and our
own host) is one. Authorized cases do change state (workers take and deliver
jobs, a new one is posted when few are open), which keeps every route live.

Progress goes to stderr with the first few offending cases; the last stdout
line is one JSON object. The exit status is 1 when any case failed.

    python benchmarks/fuzz_jobs.py [--cases 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import fuzzing

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PUBLIC: Final = "http://jobs.fuzz/"
HOST: Final = "jobs.fuzz"
PRICE: Final = "0.01 USDC"
OPEN_JOBS_MIN: Final = 2
STATE_ROUTES: Final = ("accept", "deliver")


@dataclass
class Case:
    index: int
    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: list[bytes]
    authorized: bool  # may this case change a job?
    note: str

    def describe(self) -> str:
        size = sum(len(piece) for piece in self.body)
        shown = b"".join(self.body)[:120]
        heads = [(k.decode("latin-1"), v.decode("latin-1")[:60]) for k, v in self.headers]
        return (
            f"case {self.index} ({self.note}): {self.method} {self.raw_path[:120]!r}"
            f"?{self.query[:60]!r} headers={heads} body[{size}]={shown!r}"
        )


@dataclass
class Worker:
    account: Any
    token: str
    csrf: str


@dataclass
class World:
    app: Any
    service: Any
    sessions: Any
    network: str
    workers: list[Worker]
    forged: str
    expired: str
    used_sign_ins: list[bytes] = field(default_factory=list)


def build_world(workdir: Path) -> World:
    from eth_account import Account

    from farthing.agents.books import AgentBooks
    from farthing.agents.policy import SpendPolicy
    from farthing.jobs import DirectEscrowOperator, JobService, JobSettings, ScriptedReviewer
    from farthing.jobs.server import create_app
    from farthing.jobs.worker_auth import WorkerSessions
    from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
    from farthing.paywall.schemes.auth_capture.contract import (
        AuthCaptureEscrow,
        place_auth_capture_contracts,
    )
    from farthing.wallet.chain import MemoryChain
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

    chain = MemoryChain(accounts=4)
    owner, payer, operator = (a.signer() for a in chain.dev_accounts()[:3])
    place_auth_capture_contracts(chain)
    asset = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    token = Stablecoin(chain, asset)
    start = chain.block_number()
    if not (
        token.configure_minter(owner.address, sender=owner).ok
        and token.mint(payer.address, 1_000_000_000, sender=owner).ok
    ):
        raise RuntimeError("cannot fund the payer")
    database = LedgerDatabase(LedgerSettings(data_dir=workdir, busy_timeout_s=60))
    upgrade_database(database)
    books = AgentBooks(database, agent_id="fuzz-hirer", asset=asset).ensure()
    books.set_policy(SpendPolicy())  # the fuzz is about the edge, not about approvals
    books.sync_deposits(chain, payer.address, from_block=start)
    escrow = AuthCaptureEscrow(chain)
    service = JobService(
        books=books,
        chain=chain,
        operator=DirectEscrowOperator(escrow, operator, asset),
        payer=payer,
        escrow=escrow,
        reviewer=ScriptedReviewer(),
        settings=JobSettings(delivery_chars_max=20_000),
    )
    sessions = WorkerSessions.ephemeral()
    app = create_app(service, sessions=sessions, public_url=PUBLIC)
    workers = []
    for _ in range(3):
        account = Account.create()
        issued = sessions.issue(account.address)
        workers.append(Worker(account, issued.token, sessions.csrf(issued)))
    forged = WorkerSessions.ephemeral().issue(workers[0].account.address).token
    expired = sessions.issue(workers[0].account.address, now_s=1_000).token
    world = World(app, service, sessions, chain.network, workers, forged, expired)
    for _ in range(OPEN_JOBS_MIN + 1):
        post_job(world)
    return world


def post_job(world: World) -> None:
    deadline = world.service.chain.timestamp() + 30 * 86_400
    result = world.service.post(
        title="Fuzz a job",
        specification="Do the thing.",
        criteria="done",
        price=PRICE,
        rate=None,
        deadline=deadline,
    )
    if not result.ok:
        raise RuntimeError(f"cannot post a job: {result.message}")


_SNAPSHOT: Final = (
    "SELECT id, state, worker, delivery, held, captured, version FROM jobs_job ORDER BY id"
)


def snapshot(world: World) -> tuple[Any, ...]:
    """Every job's state, worker, delivery, money and version (one query, no row objects)."""
    from sqlalchemy import text

    with world.service.database.read() as session:
        return tuple(tuple(row) for row in session.execute(text(_SNAPSHOT)))


# ---------------------------------------------------------------- cases

_ODD_IDS: Final = ("0", "-1", "999999", str(2**70), "abc", "1e3", " 1", "%31", "١", "1.0", "")


def _job_id(rng: random.Random, ids: list[int]) -> str:
    if ids and rng.random() < 0.7:
        return str(rng.choice(ids[-8:]))  # the newest: open ones among them
    return rng.choice(_ODD_IDS) + ("x" * rng.randrange(500) if rng.random() < 0.05 else "")


def _path(rng: random.Random, ids: list[int]) -> tuple[str, str]:
    """(path, route kind)."""
    job = _job_id(rng, ids)
    options = [
        ("/", "page"),
        (f"/jobs/{job}", "page"),
        (f"/jobs/{job}/accept", "form"),
        (f"/jobs/{job}/deliver", "form"),
        ("/sign-out", "signout"),
        ("/api/jobs", "read"),
        (f"/api/jobs/{job}", "read"),
        (f"/api/jobs/{job}/accept", "api"),
        (f"/api/jobs/{job}/deliver", "api"),
        ("/api/sign-in", "signin"),
        ("/api/me", "read"),
        ("/.jobs/jobs.js", "read"),
        ("/.jobs/jobs.css", "read"),
        ("/.jobs/../api/jobs", "read"),
        (f"/api/jobs/{job}/accept/", "api"),
        ("//api//jobs", "read"),
        ("/api/jobs/%2e%2e/1/accept", "api"),
        ("/" + "a" * rng.randrange(1, 3000), "read"),
    ]
    weights = [3, 4, 8, 8, 2, 3, 3, 12, 14, 8, 2, 1, 1, 1, 1, 1, 1, 1]
    return rng.choices(options, weights)[0]


def _method(rng: random.Random, kind: str) -> str:
    usual = "POST" if kind in ("form", "api", "signin", "signout") else "GET"
    roll = rng.random()
    if roll < 0.8:
        return usual
    if roll < 0.9:
        return rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    return rng.choice([usual.lower(), "Post", "POST ", "X-POST", "CONNECT", "TRACE", "P\x00ST"])


def _host(rng: random.Random) -> tuple[list[bytes], bool]:
    roll = rng.random()
    if roll < 0.86:
        return [HOST.encode()], True
    if roll < 0.9:
        return [rng.choice([b"127.0.0.1:8720", b"localhost", b"[::1]:9", b"JOBS.FUZZ"])], True
    odd = rng.choice(
        [
            [b"evil.example"],
            [b"jobs.fuzz.evil.example"],
            [b"evil.example@jobs.fuzz"],
            [b""],
            [],
            [HOST.encode(), b"evil.example"],
            [b"jobs.fuzz:99999"],
            [b"x" * 5000],
            ["jöbs.fuzz".encode()],
        ]
    )
    return odd, False


def _text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return rng.choice(["a complete translation", "done", "पूरा", "x", " ", "", "<b>hi</b>"])
    if kind < 0.7:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFF)]))
                       for _ in range(rng.randrange(1, 60)))  # fmt: skip
    if kind < 0.8:
        return rng.choice(["https://ex.example/w", "javascript:alert(1)", "http://", "ftp://x/y"])
    return "y" * rng.choice([100, 19_999, 20_001, 80_000])


def _mutate(rng: random.Random, value: Any) -> Any:
    return rng.choice(
        [None, True, 0, -1, 1.5, 10**30, "", [], {}, [value], {"v": value}, str(value) * 3]
    )


def _json_body(rng: random.Random, route: str) -> bytes:
    if route.endswith("accept") and rng.random() < 0.5:
        data: Any = {} if rng.random() < 0.7 else {"x": 1}
    else:
        data = {"kind": rng.choice(["text", "url", "file", "video", "TEXT"]), "content": _text(rng)}
        if rng.random() < 0.3:
            key = rng.choice(list(data))
            data[key] = _mutate(rng, data[key])
        if rng.random() < 0.1:
            data[rng.choice(["price", "worker", "state", ""])] = _text(rng)
        if rng.random() < 0.1:
            data.pop(rng.choice(list(data)))
    raw = json.dumps(data).encode()
    roll = rng.random()
    if roll < 0.06:  # a lone surrogate, escaped: valid JSON, not text
        raw = raw.replace(b'"kind"', rng.choice([rb'"\ud800"', rb'"k\udfffind"']), 1)
        raw = raw.replace(b'"content": "', b'"content": "\\ud83d', 1)
    elif roll < 0.1:
        raw = rng.choice([[1, 2], "text", 7, None]).__repr__().encode()
    return raw


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([33, 1_000, 100_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'{"content":[', b"]}")])
    middle = rng.choice([b"1", b"", b'"x"'])
    return opener * depth + middle + closer * (depth if rng.random() < 0.9 else depth - 1)


def _odd_body(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"",
            b"{",
            b"\xff\xfe\x00",
            b'{"content": NaN}',
            b'{"content": Infinity}',
            b'{"content": ' + b"9" * 5_000 + b"}",
            b'{"content": "a"} trailing',
            b"\x00" * 100,
            b'{"content": "' + "é".encode("latin-1") + b'"}',
            b"[" * 30 + b"]" * 30,
            b'{"kind": "text", "content": "x", "kind": "url"}',
            b"x" * 200_000,
        ]
    )


def _form(rng: random.Random, csrf: str | None, route: str) -> bytes:
    fields = []
    if csrf is not None:
        fields.append(("csrf_token", csrf))
    if route.endswith("deliver"):
        fields += [("kind", rng.choice(["text", "url", "file", "x"])), ("content", _text(rng))]
    if rng.random() < 0.05:
        fields += [(f"f{i}", "v") for i in range(rng.randrange(5, 40))]
    rng.shuffle(fields)
    body = "&".join(f"{quote(k)}={quote(v)}" for k, v in fields)
    if rng.random() < 0.05:
        body += rng.choice(["&%ZZ", "&csrf_token=%ED%A0%80", "&&&", "=", "%FF%FE"])
    return body.encode()


def _sign_in(rng: random.Random, world: World) -> tuple[bytes, str]:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from farthing.paywall.edge.sign_in import siwe_message

    roll = rng.random()
    if world.used_sign_ins and roll < 0.1:
        return rng.choice(world.used_sign_ins), "replayed sign-in"
    worker = rng.choice(world.workers)
    challenge = world.sessions.challenge(PUBLIC, world.network)
    payload = {
        **challenge["info"],
        "address": worker.account.address,
        "chainId": challenge["supportedChains"][0]["chainId"],
        "type": "eip191",
    }
    note = "signed sign-in"
    if roll < 0.5:
        key = rng.choice(list(payload))
        payload[key] = _mutate(rng, payload[key]) if rng.random() < 0.5 else _text(rng)
        note = f"sign-in with {key} changed"
    try:
        message = siwe_message(payload)
        signed = Account.sign_message(encode_defunct(text=message), worker.account.key)
        payload["signature"] = "0x" + signed.signature.hex()
    except Exception:  # noqa: BLE001 - a payload too odd to sign goes unsigned
        payload["signature"] = "0x" + "00" * 65
    if rng.random() < 0.1:
        payload["signature"] = rng.choice(["", "0x", "0x" + "ab" * 70, 5])
    body = json.dumps(payload).encode()
    if note == "signed sign-in":
        world.used_sign_ins = (world.used_sign_ins + [body])[-20:]
    return body, note


def make_case(index: int, seed: int, world: World, ids: list[int]) -> Case:
    rng = random.Random(f"{seed}/{index}")
    path, kind = _path(rng, ids)
    method = _method(rng, kind)
    hosts, host_ok = _host(rng)
    headers: list[tuple[bytes, bytes]] = [(b"host", h) for h in hosts]
    worker = rng.choice(world.workers)
    other = rng.choice([w for w in world.workers if w is not worker])
    session_ok = False
    via_bearer = False
    roll = rng.random()
    if roll < 0.35:
        headers.append((b"authorization", f"Bearer {worker.token}".encode()))
        session_ok = via_bearer = True
    elif roll < 0.6:
        headers.append((b"cookie", f"farthing_jobs_session={worker.token}".encode()))
        session_ok = True
        if rng.random() < 0.1:  # a bearer with a token wins over the cookie: this one is no good
            bearer = rng.choice([b"x.y", b"", b"  ", b"a" * 2000])
            headers.append((b"authorization", b"Bearer " + bearer))
            session_ok = not bearer.strip()  # an empty bearer is no bearer: the cookie counts
    elif roll < 0.75:
        bad = rng.choice([world.forged, world.expired, "x.y", "", worker.token + "x",
                          worker.token[:-3] + "AAA", "a" * 5000])  # fmt: skip
        where = rng.choice(["bearer", "cookie", "scheme"])
        if where == "bearer":
            headers.append((b"authorization", f"Bearer {bad}".encode()))
        elif where == "cookie":
            headers.append((b"cookie", f"farthing_jobs_session={bad}".encode()))
        else:
            headers.append((b"authorization", f"Basic {worker.token}".encode()))
    content_type = rng.choice(
        [b"application/json", b"application/json; charset=utf-8", b"APPLICATION/JSON",
         b"application/x-www-form-urlencoded", b"text/plain", b"multipart/form-data", None]
    )  # fmt: skip
    csrf_ok = False
    note = kind
    if kind == "form" or kind == "signout":
        csrf_roll = rng.random()
        csrf = None
        if csrf_roll < 0.5:
            csrf, csrf_ok = worker.csrf, True
        elif csrf_roll < 0.7:
            csrf = other.csrf
        elif csrf_roll < 0.85:
            csrf = rng.choice(["", "nope", worker.csrf[:-1], worker.csrf + "x", "é"])
        body = _form(rng, csrf, path)
        if rng.random() < 0.7:
            content_type = b"application/x-www-form-urlencoded"
    elif kind == "signin" and method.upper() == "POST" and rng.random() < 0.6:
        body, note = _sign_in(rng, world)
    else:
        roll = rng.random()
        if roll < 0.7:
            body = _json_body(rng, path)
        elif roll < 0.85:
            body, note = _deep(rng), f"{kind} deep"
        else:
            body = _odd_body(rng)
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if rng.random() < 0.9:
        headers.append((b"content-length", str(len(body)).encode()))
    elif rng.random() < 0.5:
        headers.append((b"content-length", rng.choice([b"0", b"-1", b"99999999999", b"abc"])))
    pieces = [body]
    if len(body) > 10 and rng.random() < 0.2:
        cuts = sorted(rng.sample(range(1, len(body)), min(3, len(body) - 1)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    query = b""
    if rng.random() < 0.1:
        query = rng.choice([b"scope=mine", b"scope=open", b"scope=all", b"scope=%ED%A0%80",
                            b"scope=" + b"m" * 3000, b"a=1&a=2", b"%"])  # fmt: skip
    json_ok = (
        via_bearer or (content_type or b"").split(b";")[0].strip().lower() == b"application/json"
    )
    if kind == "form":
        authorized = host_ok and session_ok and csrf_ok
    else:
        authorized = host_ok and session_ok and json_ok
    raw = quote(path, safe="/%:@!$&'()*+,;=-._~").encode("ascii")
    return Case(index, method, raw, query, headers, pieces, authorized, note)


# ---------------------------------------------------------------- the run


@dataclass
class Tally(fuzzing.Tally):
    state_changes: int = 0


def judge(outcome: fuzzing.Outcome, case: Case, changed: bool) -> list[str]:
    failures = []
    if outcome.error is not None or not outcome.status:
        failures.append("crash")
    if outcome.status >= 500:
        failures.append("status_5xx")
    if changed and not case.authorized:
        failures.append("unauthorized_state_change")
    return failures


def _error_code(outcome: fuzzing.Outcome) -> str | None:
    code = (fuzzing.json_object(outcome.body) or {}).get("error")
    return str(code)[:40] if code is not None else None


async def run_cases(world: World, indexes: range | list[int], args: argparse.Namespace) -> Tally:
    tally = Tally()
    progress = fuzzing.Progress("fuzz_jobs", len(indexes))
    shown = fuzzing.Shown(args.show, args.only is not None)
    before = await asyncio.to_thread(snapshot, world)
    for count, index in enumerate(indexes, 1):
        ids = [row[0] for row in before]
        case = make_case(index, args.seed, world, ids)
        scope = fuzzing.scope_of(case.method, case.raw_path, case.query, case.headers,
                         client=("127.0.0.1", 40000 + case.index % 20000), port=8720)  # fmt: skip
        outcome = await fuzzing.drive(
            world.app, scope, case.body, args.timeout_s, traceback_limit=8
        )
        after = await asyncio.to_thread(snapshot, world)
        changed = after != before
        tally.state_changes += changed
        tally.cases += 1
        tally.statuses[str(outcome.status or "error")] += 1
        code = _error_code(outcome)
        if code is not None:
            tally.reasons[code] += 1
        for failure in judge(outcome, case, changed):
            tally.failures[failure] += 1
            if shown.due(failure):
                body = bytes(outcome.body[:300])
                fuzzing.show_found(failure, case.describe(), outcome.status, body, outcome.error)
        if sum(1 for row in after if row[1] == "open") < OPEN_JOBS_MIN:
            await asyncio.to_thread(post_job, world)
            after = await asyncio.to_thread(snapshot, world)
        before = after
        progress.tick(
            count,
            f"5xx {tally.failures['status_5xx']}, crashes {tally.failures['crash']}, "
            f"unauthorized {tally.failures['unauthorized_state_change']}",
        )
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fuzz the jobs page's HTTP API for 5xx, crashes and unauthorized state changes."
    )
    fuzzing.add_case_arguments(parser, timeout_s=60.0, shards=True)
    args = parser.parse_args()
    indexes = fuzzing.case_indexes(parser, args)
    with tempfile.TemporaryDirectory(prefix="fuzz-jobs-") as workdir:
        world = build_world(Path(workdir))
        started = time.perf_counter()
        try:
            tally = asyncio.run(run_cases(world, indexes, args))
        finally:
            world.service.database.dispose()
            world.service.chain.close()
        seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        **fuzzing.report_head("fuzz_jobs", tally),
        "crashes": tally.failures["crash"],
        "unauthorized_state_changes": tally.failures["unauthorized_state_change"],
        "state_changes": tally.state_changes,
        "recursion_limit": sys.getrecursionlimit(),
        "seed": args.seed,
        "first_case": indexes[0],
        "cases_per_s": fuzzing.cases_per_s(tally, seconds),
        "statuses": dict(sorted(tally.statuses.items())),
        "errors": dict(sorted(tally.reasons.items())),
    }
    failed = report["status_5xx"] or report["crashes"] or report["unauthorized_state_changes"]
    return fuzzing.finish(report, bool(failed))


if __name__ == "__main__":
    sys.exit(main())
