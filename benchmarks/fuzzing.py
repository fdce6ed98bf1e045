"""The fuzzers' harness: the case loop's arguments, raw ASGI driving, the watchdog, progress and the report line.

``fuzz_paywall``, ``fuzz_facilitator``, ``fuzz_jobs`` and ``fuzz_dashboard``
each build their own world and cases and judge their own outcomes; what they
share is here:

* the command line every fuzzer takes (``--cases``, ``--seed``, ``--only``,
  ``--show``, ``--timeout-s``, and ``--start`` where a fuzzer runs in shards)
  and the case indexes it names;
* :func:`drive`: one request handed to an ASGI app as a server hands it over
  (decoded ``path``, untouched ``raw_path``), the body in pieces, under the
  per-case time limit, with faulthandler dumping every thread's stack when a
  case is stuck where cancellation cannot reach;
* :class:`Tally` (what every fuzzer counts), :class:`Progress` (a line on stderr every few seconds), :class:`Shown` and
  :func:`show_found` (the first few offending cases on stderr) and
  :func:`finish` (the last stdout line, one JSON object, and the exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

PROGRESS_EVERY_S: Final = 5.0

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


# ---------------------------------------------------------------- the command line


def add_case_arguments(
    parser: argparse.ArgumentParser, *, timeout_s: float, shards: bool = False
) -> None:
    """The arguments every fuzzer takes; ``shards`` adds ``--start``."""
    parser.add_argument("--cases", type=int, default=100_000, help="number of cases (100000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the case generator (1)")
    if shards:
        parser.add_argument(
            "--start",
            type=int,
            default=0,
            help="first case index (0), to run a long fuzz in shards",
        )
    parser.add_argument("--only", type=int, default=None, help="run just this case index")
    parser.add_argument("--show", type=int, default=5, help="offending cases printed per kind")
    parser.add_argument("--timeout-s", type=float, default=timeout_s, help="a case's time limit")


def case_indexes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> range | list[int]:
    """The indexes the arguments name; and faulthandler on, so a crash of the process says where."""
    start = getattr(args, "start", 0)
    if args.cases < 1 or start < 0:
        parser.error("--cases must be positive and --start not negative")
    if not faulthandler.is_enabled():
        faulthandler.enable()
    return range(start, start + args.cases) if args.only is None else [args.only]


# ---------------------------------------------------------------- driving one case


@dataclass
class Outcome:
    """What the app sent; ``error`` is ``"hang"`` or the traceback of what it raised."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    error: str | None = None


def scope_of(
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    client: tuple[str, int] | None,
    port: int,
) -> dict[str, Any]:
    """The scope a server builds for this request line (it unquotes the raw path)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": client,
        "server": ("127.0.0.1", port),
        "state": {},
        "extensions": {},
    }


async def drive(
    app: App,
    scope: dict[str, Any],
    body: list[bytes],
    timeout_s: float,
    *,
    settle_s: float = 0.0,
    traceback_limit: int | None = None,
) -> Outcome:
    """One request, its body in ``body``'s pieces, given ``timeout_s`` to answer.

    A case that does not finish in time is a hang. With ``settle_s`` the
    hung case is left running that much longer before it is cancelled, so
    what it still does (a transaction it sent) lands in its own case and is
    not blamed on the next one.
    """
    outcome = Outcome()
    pieces = list(body) or [b""]
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pieces:
            chunk = pieces.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
        await finished.wait()  # the client stays until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if outcome.status:
                raise RuntimeError("the response was started twice")
            outcome.status = int(message["status"])
            outcome.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            outcome.body += message.get("body", b"")
            if not message.get("more_body"):
                finished.set()

    # A case stuck where cancellation cannot reach (a worker thread) would
    # stop the run silently: dump every thread's stack to stderr instead.
    faulthandler.dump_traceback_later(timeout_s * 2 + settle_s + 5, exit=False)
    task = asyncio.ensure_future(app(scope, receive, send))
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        outcome.error = "hang"
        if settle_s > 0:
            finished.set()  # the client gives up: the app may read its disconnect
            await asyncio.wait({task}, timeout=settle_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    except Exception:  # noqa: BLE001 - under a server this is a 500: report it, go on
        outcome.error = traceback.format_exc(limit=traceback_limit)
    finally:
        faulthandler.cancel_dump_traceback_later()
    finished.set()
    if outcome.error is None and outcome.status == 0:
        outcome.error = "the app returned without a response"
    return outcome


def json_object(body: bytes | bytearray) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    if not body.startswith(b"{"):
        return None
    try:
        data = json.loads(bytes(body))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- what the run counts and prints


@dataclass
class Tally:
    """What every fuzzer counts: cases (by the fuzzer's own kinds), failures, statuses, reasons."""

    cases: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


class Progress:
    """A line on stderr every few seconds: cases done, the rate, and the fuzzer's counts."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.started = self.last = time.perf_counter()

    def tick(self, count: int, counts: str) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            print(
                f"{self.label}: {count}/{self.total} cases, "
                f"{count / (now - self.started):.0f}/s, {counts}",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class Shown:
    """How many offending cases of each kind were printed: ``--show`` of each, all with ``--only``."""

    show: int
    only: bool
    counts: Counter[str] = field(default_factory=Counter)

    def due(self, failure: str) -> bool:
        if self.counts[failure] < self.show or self.only:
            self.counts[failure] += 1
            return True
        return False


def show_found(failure: str, case: str, status: int, body: bytes, error: str | None) -> None:
    """One offending case on stderr: what was sent, what came back, and any traceback."""
    lines = [f"FOUND {failure}: {case}", f"  -> status {status or '-'}; body {body!r}"]
    if error and error != "hang":
        lines.append("  " + error.rstrip().replace("\n", "\n  "))
    print("\n".join(lines), file=sys.stderr, flush=True)


def report_head(bench: str, tally: Tally) -> dict[str, Any]:
    """The report's first keys, as every fuzzer's report starts: the fuzzer, the cases, the 5xx."""
    return {"bench": bench, "cases": tally.cases, "status_5xx": tally.failures["status_5xx"]}


def cases_per_s(tally: Tally, seconds: float) -> float:
    return round(tally.cases / seconds, 1) if seconds > 0 else 0.0


def finish(report: dict[str, Any], failed: bool) -> int:
    """Print the report as the last stdout line; the exit status is 1 when any case failed."""
    print(json.dumps(report))
    return 1 if failed else 0
