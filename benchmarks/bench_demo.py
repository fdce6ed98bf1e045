"""``farthing demo`` from a cold start: how long until the agent has paid for its last article.

Each run starts a fresh ``python -m farthing demo`` process (nothing warm:
the interpreter, web3, the py-evm chain, SQLite files, the paywall and the
agent all start from nothing) and timestamps its output lines as they arrive
on an unbuffered pipe. The time of the last "bought …" line is the cold start
to the last paid article; the process's exit ends the run (the purchases
table and the reconciliation come after). ``--chain-url`` runs the same
against a running anvil.

The last line printed is one JSON object:
{"bench":"demo","runs":…,"to_last_paid_s":…,"total_s":…,"payments":…,"target_s":15}
with the medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TARGET_S = 15.0


def one_run(extra: list[str]) -> tuple[float, float, int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "farthing", "demo", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    last_paid, payments = 0.0, 0
    for line in process.stdout:
        if line.split("s ", 1)[-1].startswith("bought "):
            last_paid = time.perf_counter() - started
            payments += 1
    _, err = process.communicate(timeout=300)
    total = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"farthing demo failed: {err.strip()}")
    return last_paid, total, payments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chain-url", default=None)
    args = parser.parse_args()
    extra = ["--chain-url", args.chain_url] if args.chain_url else []
    results = [one_run(extra) for _ in range(max(1, args.runs))]
    for n, (paid, total, payments) in enumerate(results, 1):
        print(
            f"run {n}: last paid article at {paid:.2f}s, exit at {total:.2f}s, {payments} payments"
        )
    summary = {
        "bench": "demo",
        "chain": "anvil" if args.chain_url else "memory",
        "runs": len(results),
        "to_last_paid_s": round(statistics.median(r[0] for r in results), 2),
        "total_s": round(statistics.median(r[1] for r in results), 2),
        "payments": results[-1][2],
        "target_s": TARGET_S,
    }
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
