"""Signature verifications per second: Farthing's fast path against eth-account.

Both paths check the same pre-signed EIP-3009 authorizations, one at a time on
one core, going round the set until their time is up:

- fast: ``verify_authorization_signature(signed)`` (hand-built EIP-712 digest,
  cached domain separator, coincurve recovery, low-s and v checks);
- eth-account: ``Account.recover_message(encode_typed_data(...))`` and a
  comparison with ``from``, as installed (eth-keys on coincurve; eth-hash on
  whichever backend it picks, pycryptodome by default). The summary names
  both backends, because the ratio depends on them: forcing eth-hash onto
  pysha3 (``ETH_HASH_BACKEND=pysha3``) makes eth-account about a quarter faster.

The slices alternate between the two paths, so load from other processes falls
on both alike, and each rate is the median slice. Nothing is cached per
signature, so going round the set repeats real work. Every answer is checked;
a wrong one aborts the run. Most of a fast verification (about 33 of 40 µs
here) is libsecp256k1's recovery itself, which eth-account also pays, so the
ratio cannot go much past 6 on this kind of machine.

The last line printed is one JSON object:
{"bench":"verify","fast_per_s":…,"eth_account_per_s":…,"ratio":…}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak as eth_hash_keccak
from eth_keys.backends import get_backend

from farthing.wallet.eip712 import (
    KECCAK_BACKEND,
    RECOVERY_BACKEND,
    keccak256,
    verify_authorization_signature,
)
from farthing.wallet.eip3009 import (
    SignedAuthorization,
    TokenDomain,
    build_authorization,
    typed_data,
)
from farthing.wallet.signer import LocalSigner

COUNT_DEFAULT = 2_000
COUNT_MAX = 100_000
DURATION_S_DEFAULT = 4.0
DURATION_S_MAX = 30.0
WARMUP_COUNT = 200
KEY_COUNT = 50  # distinct payers, so recovery is not always of the same point
CHECK_EVERY = 64  # look at the clock every so many verifications
SLICE_S = 0.25
WARMUP_S = 0.2

DOMAINS = [
    TokenDomain("USD Coin", "2", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
    TokenDomain("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
    TokenDomain("Farthing Dollar", "1", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
]
PAYEE = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


def eth_account_backends() -> str:
    """eth-keys' EC backend and eth-hash's keccak backend, as eth-account uses them.

    Named in the summary so that a slow fallback on either side cannot pass
    unnoticed for a fair comparison.
    """
    eth_hash_keccak(b"")  # eth-hash binds its backend on first use
    hasher = getattr(eth_hash_keccak.hasher, "__self__", None)
    return f"eth-keys {type(get_backend()).__name__}, eth-hash {type(hasher).__name__}"


def sign_set(count: int) -> list[SignedAuthorization]:
    """Sign ``count`` authorizations through the eth-account reference signer."""
    # Benchmark keys are keccak of a public string: never hold value with them.
    signers = [LocalSigner(keccak256(f"farthing-bench-key-{i}".encode())) for i in range(KEY_COUNT)]
    out = []
    for i in range(count):
        signer = signers[i % KEY_COUNT]
        domain = DOMAINS[i % len(DOMAINS)]
        authorization = build_authorization(
            from_address=signer.address,
            to=PAYEE,
            value=1_000 + i,
            now=1_750_000_000 + i,
            nonce=keccak256(f"farthing-bench-nonce-{i}".encode()),
        )
        signature = signer.sign_typed_data(*typed_data(authorization, domain))
        out.append(SignedAuthorization(authorization, signature, domain))
    return out


def fast_check(signed: SignedAuthorization) -> bool:
    return verify_authorization_signature(signed).valid


def eth_account_check(signed: SignedAuthorization) -> bool:
    # The typed data is built here, as the fast path builds its digest inside its call.
    data = typed_data(signed.authorization, signed.domain, signed.primary_type)
    signable = encode_typed_data(data.domain, data.types, data.message)
    recovered = Account.recover_message(signable, signature=signed.signature)
    return bool(recovered == signed.authorization.from_address)


class PathTimer:
    """Runs one path over the set in timed slices, resuming where it stopped."""

    def __init__(self, name: str, check: Callable[[SignedAuthorization], bool]) -> None:
        self.name = name
        self.check = check
        self.wall_rates: list[float] = []
        self.cpu_rates: list[float] = []
        self._position = 0

    def run_slice(self, items: Sequence[SignedAuthorization], slice_s: float) -> None:
        check, n, i, done = self.check, len(items), self._position, 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        deadline = wall0 + slice_s
        while True:
            for _ in range(CHECK_EVERY):
                if not check(items[i]):
                    raise SystemExit(f"{self.name} refused a good signature (item {i})")
                i = (i + 1) % n
            done += CHECK_EVERY
            wall = time.perf_counter()
            if wall >= deadline:
                self.wall_rates.append(done / (wall - wall0))
                self.cpu_rates.append(done / max(time.process_time() - cpu0, 1e-9))
                self._position = i
                return


def _positive(kind: Callable[[str], float | int], limit: float) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(f"must be in (0, {limit}]")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Signature verifications per second: fast path vs eth-account "
        "(last line: one JSON object)."
    )
    parser.add_argument(
        "--count",
        type=_positive(int, COUNT_MAX),
        default=COUNT_DEFAULT,
        help=f"pre-signed authorizations to verify (default {COUNT_DEFAULT})",
    )
    parser.add_argument(
        "--duration-s",
        type=_positive(float, DURATION_S_MAX),
        default=DURATION_S_DEFAULT,
        help=f"timed seconds per path (default {DURATION_S_DEFAULT})",
    )
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    items = sign_set(int(args.count))
    print(
        f"signed {len(items)} authorizations by {KEY_COUNT} keys over {len(DOMAINS)} domains "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    # Warm-up: first calls fill the domain-separator cache and module caches.
    fast, eth = PathTimer("fast path", fast_check), PathTimer("eth-account", eth_account_check)
    for timer in (fast, eth):
        timer.run_slice(items[:WARMUP_COUNT], WARMUP_S)
        timer.wall_rates.clear()
        timer.cpu_rates.clear()

    # Short alternating slices, so that load from other processes falls on both
    # paths alike, and the median slice, so that a stray spike does not count.
    rounds = max(1, round(float(args.duration_s) / SLICE_S))
    for _ in range(rounds):
        fast.run_slice(items, SLICE_S)
        eth.run_slice(items, SLICE_S)
    fast_per_s = statistics.median(fast.wall_rates)
    eth_per_s = statistics.median(eth.wall_rates)
    ratio = fast_per_s / eth_per_s
    cpu_ratio = statistics.median(fast.cpu_rates) / statistics.median(eth.cpu_rates)

    print(
        f"fast path   : {fast_per_s:>8,.0f} verifications/s"
        f"  (keccak {KECCAK_BACKEND}, EC {RECOVERY_BACKEND})"
    )
    print(f"eth-account : {eth_per_s:>8,.0f} verifications/s  ({eth_account_backends()})")
    print(
        f"ratio       : {ratio:.2f}x wall clock, {cpu_ratio:.2f}x CPU time"
        f"  (median of {rounds} alternating {SLICE_S:g} s slices per path, one core)"
    )
    print(
        json.dumps(
            {
                "bench": "verify",
                "fast_per_s": round(fast_per_s),
                "eth_account_per_s": round(eth_per_s),
                "ratio": round(ratio, 2),
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
