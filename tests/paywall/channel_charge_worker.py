"""Helper process for test_channel_state: charges its share of vouchers on one shared channel.

Reads a JSON job (database URL, chain id, config, terms, price, vouchers) from
the file named by argv[1], retries each of its vouchers until the channel's
cumulative amount reaches it, and prints one JSON line: the ceilings it got
accepted and every refusal reason it saw.
"""

from __future__ import annotations

import json
import sys
import time

from farthing.paywall.schemes.batch_settlement.state import (
    ChannelStore,
    ChannelTerms,
    ChargeAccepted,
)
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    SignedVoucher,
)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    store = ChannelStore(job["url"], domain=ChannelDomain(job["chain_id"]), network=job["network"])
    config = ChannelConfig.from_wire(job["config"])
    terms = ChannelTerms(**job["terms"])
    accepted: list[int] = []
    reasons: set[str] = set()
    deadline = time.monotonic() + 120
    for wire in job["vouchers"]:
        voucher = SignedVoucher(
            bytes.fromhex(wire["channelId"][2:]),
            int(wire["maxClaimableAmount"]),
            bytes.fromhex(wire["signature"][2:]),
        )
        while time.monotonic() < deadline:
            outcome = store.charge(terms, config, voucher, price=job["price"], actual=job["price"])
            if isinstance(outcome, ChargeAccepted):
                accepted.append(voucher.max_claimable_amount)
                break
            reasons.add(outcome.reason)
            record = outcome.record
            if record is not None and record.charged >= voucher.max_claimable_amount:
                break  # someone else's copy of this voucher won: it is spent
            time.sleep(0.002)
    store.dispose()
    print(json.dumps({"accepted": accepted, "reasons": sorted(reasons)}), flush=True)


if __name__ == "__main__":
    main()
