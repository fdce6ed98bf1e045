"""A writer process for test_concurrency: reserve (and post) payments against one budget.

Run as ``python budget_worker.py SETTINGS_JSON FIRST_ID ATTEMPTS AMOUNT START_AT``;
prints one JSON object counting each result. It is a script, not a test
module, so the parent can start it as a real, separate process.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

from farthing.ledger import (
    LedgerDatabase,
    LedgerSettings,
    NewTransfer,
    TransferFlags,
    create_transfers,
)


def main() -> None:
    settings = LedgerSettings(**json.loads(sys.argv[1]))
    first_id, attempts, amount = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    start_at = float(sys.argv[5])
    database = LedgerDatabase(settings)
    counts: Counter[str] = Counter()
    time.sleep(max(0.0, start_at - time.time()))  # all writers start together
    for payment_id in range(first_id, first_id + attempts):
        reserve = NewTransfer(
            id=payment_id, debit_account_id=2, credit_account_id=3, amount=amount,
            ledger=1, code=2, flags=TransferFlags.PENDING,
        )  # fmt: skip
        with database.write() as session:
            (result,) = create_transfers(session=session, transfers=[reserve])
        counts[str(result)] += 1
        if result == "ok" and payment_id % 2 == 0:
            post = NewTransfer.post(id=payment_id + 10**9, pending_id=payment_id)
            with database.write() as session:
                (posted,) = create_transfers(session=session, transfers=[post])
            counts[f"post_{posted}"] += 1
    database.dispose()
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
