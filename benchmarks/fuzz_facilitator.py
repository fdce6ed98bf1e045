"""Structure-aware fuzzing of the facilitator's HTTP API: no 5xx, and no money moved that the rules do not allow.

The target is what ``farthing facilitator serve`` runs: ``HostGuard`` around
``facilitator_app`` with an API key, over a ``LocalFacilitator`` on the
in-process memory chain that settles only our token and only for the merchant,
holds a channel receiver-authorizer key (batch-settlement) and an auth-capture
operator. It is driven directly as ASGI.

Every case is built from structured parts, from ``random.Random(f"{seed}/{index}")``
(``--only INDEX`` replays one; keys and signatures are fresh each run):
the method, the path, the ``Host``, the API key (right, wrong, absent), the
content type, and a body: ``exact`` payments (to the merchant, to oneself with
5 atomic units, in a junk token, to a stranger), channel deposits, vouchers,
claims, sweeps and refunds (fair, greedy, unclaimed, with foreign signatures
and odd nonces), auth-capture shapes, then, for many cases, random mutations
of the JSON (wrong types, huge and non-ASCII numbers, deleted keys, deep
nesting) or bytes that are not JSON at all.

Judged per case:

- ``status_5xx``: any status of 500 or more, or an exception out of the app;
- ``hangs``: a case that does not finish within ``--timeout-s``; the judge
  then waits up to ``SETTLE_AFTER_HANG_S`` more for it before the next case,
  so a transaction it still sends (a loaded machine makes cases slow) is
  judged with it, not blamed on the next case;
- ``money_moved_unallowed``: the relayer sent a transaction (the only way the
  facilitator moves money) for anything but a key holder's ``POST /settle``
  to our own host that answered ``success: true``; or a balance moved outside
  the allowed flows (payer → merchant or escrow, escrow → payer or merchant,
  the griefer → merchant); or the junk token moved; or a refund returned more
  than the channel's balance less what was claimed after it.

Money moves only in a transaction, and the memory chain mines a block for
each one, whoever sends it; so the head's number is read after every case and
the books (``fuzz_facilitator_books``: every watched balance and the channel
in one Multicall3 ``eth_call``) only when it moved. They are checked against
the library's own readers at the start and the end (``books_disagree``).

Progress goes to stderr, the first few offending cases too; the last stdout
line is one JSON object. The exit status is 1 when any case failed. Shards
(``--start``) each build their own chain, so 100,000 cases can run as, say,
eight processes of 12,500:

    python benchmarks/fuzz_facilitator.py [--cases 100000] [--start 0] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import fuzzing
from fuzz_facilitator_books import Books, World, books, books_one_by_one, money_rules

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API_KEY: Final = "fuzz-api-key-" + secrets.token_hex(16)
# A hung case may still send its transaction: the judge waits this long for it
# (the case is a hang all the same), so the money it moves is judged with that
# case and not blamed on the next one, however slow a loaded machine makes it.
SETTLE_AFTER_HANG_S: Final = 300.0
FUNDS: Final = 10**15
GRIEFER_FUNDS: Final = 5
DEPOSIT_START: Final = 10**9
NASTY: Final[tuple[Any, ...]] = (
    None, True, False, 0, -1, 1.5, 2**256, "", "0", "-1", "1e3", "0x", "0x00",
    "²", "١٢", " 1", "1 ", "NaN", "x" * 300, [], {}, [[[]]], {"a": {"b": {}}},
    "0x" + "ff" * 20, "0x" + "00" * 20, "0x" + "ab" * 65, str(2**128), str(2**256),
    "99999999999999999999999999999999999999999999999999999999999999999999999999999999",
)  # fmt: skip


def build_world() -> World:
    from farthing.paywall import LocalFacilitator
    from farthing.paywall.facilitator.api import facilitator_app
    from farthing.paywall.schemes.auth_capture.contract import place_auth_capture_contracts
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.vouchers import (
        ChannelConfig,
        ChannelDomain,
        place_channel_contracts,
    )
    from farthing.wallet.chain import open_chain
    from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin
    from farthing.web import HostGuard
    from farthing.web.hosts import LOOPBACK_NAMES

    chain = open_chain("memory")
    owner, payer, authorizer, relayer = (a.signer() for a in chain.dev_accounts()[:4])
    place_channel_contracts(chain)
    place_auth_capture_contracts(chain)
    asset = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    junk_asset = deploy_stablecoin(chain, sender=owner, name="Junk", version="1")
    token, junk = Stablecoin(chain, asset), Stablecoin(chain, junk_asset)
    griefer = LocalSigner.generate()
    for coin, who, amount in ((token, payer.address, FUNDS), (token, griefer.address, 5),
                              (junk, griefer.address, 5)):  # fmt: skip
        if not coin.configure_minter(owner.address, sender=owner).ok:
            raise RuntimeError("cannot make the owner a minter")
        if not coin.mint(who, amount, sender=owner).ok:
            raise RuntimeError("cannot mint")
    merchant = LocalSigner.generate().address
    voucher_key = LocalSigner.generate()
    config = ChannelConfig(
        payer=payer.address,
        payer_authorizer=voucher_key.address,
        receiver=merchant,
        receiver_authorizer=authorizer.address,
        token=asset.address,
        withdraw_delay_s=900,
        salt=secrets.token_bytes(32),
    )
    facilitator = LocalFacilitator(
        chain,
        relayer,
        assets=(asset,),
        payees=(merchant,),
        channel_authorizer=authorizer,
        auth_capture_operator=relayer,
    )
    app = HostGuard(facilitator_app(facilitator, token=API_KEY), hosts=LOOPBACK_NAMES)
    world = World(
        app, chain, token, junk, ChannelEscrow(chain, CANONICAL_CHANNEL_CONTRACTS.settlement),
        payer, griefer, voucher_key, merchant, LocalSigner.generate().address, relayer.address,
        config, ChannelDomain(chain.chain_id), asset, junk_asset, chain.network,
        authorizer.address, relayer.address,
    )  # fmt: skip
    world.channel_id = world.domain.channel_id(config)
    deposit = json.dumps(_deposit(world, DEPOSIT_START)).encode()
    first = asyncio.run(call(world, "POST", "/settle", _headers(), deposit, timeout_s=60.0))
    if first.status != 200 or b'"success":true' not in first.body:
        raise RuntimeError(f"the first deposit failed: {first}")
    world.snapshot = None
    return world


# ---------------------------------------------------------------- bodies


def _exact(world: World, payer: Any, pay_to: str, amount: int, asset: Any = None) -> dict[str, Any]:
    from farthing.paywall.wire import PaymentPayload, PaymentRequirements
    from farthing.wallet.eip3009 import build_authorization, sign_authorization

    asset = asset or world.asset
    requirements = PaymentRequirements(
        network=world.network, asset=asset.address, amount=amount, pay_to=pay_to,
        max_timeout_seconds=300, token_name=asset.name, token_version=asset.version,
    )  # fmt: skip
    auth = build_authorization(from_address=payer.address, to=pay_to, value=amount, valid_for_s=240)
    signed = sign_authorization(payer, auth, requirements.domain())
    payload = PaymentPayload(accepted=requirements, authorization=auth, signature=signed.signature)
    return {
        "x402Version": 2,
        "paymentPayload": payload.to_wire(),
        "paymentRequirements": requirements.to_wire(),
    }


def _channel_requirements(world: World) -> dict[str, Any]:
    return {
        "scheme": "batch-settlement",
        "network": world.network,
        "asset": world.asset.address,
        "amount": "1000",
        "payTo": world.merchant,
        "maxTimeoutSeconds": 3600,
        "extra": {
            "receiverAuthorizer": world.authorizer,
            "withdrawDelay": 900,
            "name": world.asset.name,
            "version": world.asset.version,
        },
    }


def _channel(world: World, payload: dict[str, Any]) -> dict[str, Any]:
    requirements = _channel_requirements(world)
    return {
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "payload": payload,
            "accepted": requirements,
            "resource": {"url": "http://127.0.0.1/a", "description": "", "mimeType": ""},
        },
        "paymentRequirements": requirements,
    }


def _voucher(world: World, ceiling: int, key: Any = None) -> dict[str, Any]:
    """A signed voucher; signing is deterministic (RFC 6979), so each one is signed once."""
    from farthing.paywall.schemes.batch_settlement.vouchers import sign_voucher

    key = key or world.voucher_key
    wire = world.vouchers.get((key.address, ceiling))
    if wire is None:
        wire = sign_voucher(key, world.domain, world.channel_id, ceiling).to_wire()
        world.vouchers[(key.address, ceiling)] = wire
    return dict(wire)


def _deposit(world: World, amount: int) -> dict[str, Any]:
    from farthing.paywall.schemes.batch_settlement.vouchers import deposit_nonce
    from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
    from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS

    channel_id = world.channel_id
    salt = secrets.randbits(256)
    auth = build_authorization(
        from_address=world.payer.address, to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
        value=amount, valid_for_s=3600, now=world.chain.timestamp(),
        nonce=deposit_nonce(channel_id, salt),
    )  # fmt: skip
    signed = sign_receive_authorization(world.payer, auth, TokenDomain.for_asset(world.asset))
    snapshot = world.snapshot or world.escrow.snapshot(channel_id)
    world.snapshot = snapshot
    return _channel(world, {
        "type": "deposit",
        "channelConfig": world.config.to_wire(),
        "voucher": _voucher(world, snapshot.balance + amount),
        "deposit": {"amount": str(amount), "authorization": {"erc3009Authorization": {
            "validAfter": str(auth.valid_after), "validBefore": str(auth.valid_before),
            "salt": "0x" + salt.to_bytes(32, "big").hex(),
            "signature": "0x" + signed.signature.hex(),
        }}},
    })  # fmt: skip


def _claim_row(world: World, rng: random.Random, balance: int, claimed: int) -> dict[str, Any]:
    ceiling = rng.choice([claimed, claimed + 1, balance, balance + 1, rng.randint(0, balance + 5)])
    total = rng.choice(
        [ceiling, max(0, ceiling - 1), ceiling + 1, claimed, rng.randint(0, ceiling)]
    )
    key = world.voucher_key if rng.random() < 0.9 else world.payer
    voucher = _voucher(world, max(ceiling, 0), key)
    return {
        "voucher": {"channel": world.config.to_wire(), "maxClaimableAmount": str(ceiling)},
        "signature": voucher["signature"],
        "totalClaimed": str(total),
    }


def make_body(world: World, rng: random.Random, kind: str) -> dict[str, Any] | list[Any]:
    if kind.startswith("channel"):
        snapshot = world.snapshot or world.escrow.snapshot(world.channel_id)
        world.snapshot = snapshot
        balance, claimed = snapshot.balance, snapshot.total_claimed
    if kind == "exact_merchant":
        return _exact(world, world.payer, world.merchant, rng.randint(1, 3))
    if kind == "exact_self":
        return _exact(world, world.griefer, world.griefer.address, 1)
    if kind == "exact_junk":
        return _exact(world, world.griefer, world.griefer.address, 1, world.junk_asset)
    if kind == "exact_stranger":
        return _exact(world, world.payer, world.stranger, 1)
    if kind == "channel_deposit":
        return _deposit(world, rng.randint(1, 1000))
    if kind == "channel_voucher":
        ceiling = rng.choice([claimed, claimed + 1, balance, balance + 1])
        return _channel(world, {"type": "voucher", "channelConfig": world.config.to_wire(),
                                "voucher": _voucher(world, ceiling)})  # fmt: skip
    if kind == "channel_claim":
        rows = [_claim_row(world, rng, balance, claimed) for _ in range(rng.randint(1, 3))]
        return _channel(world, {"type": "claim", "claims": rows})
    if kind == "channel_sweep":
        return _channel(world, {"type": "settle", "receiver": world.merchant,
                                "token": world.asset.address})  # fmt: skip
    if kind == "channel_refund":
        nonce = snapshot.refund_nonce if rng.random() < 0.8 else rng.randint(0, 5)
        refund: dict[str, Any] = {
            "type": "refund",
            "channelConfig": world.config.to_wire(),
            "voucher": _voucher(world, max(claimed, 1)),
            "amount": str(rng.choice([1, balance, balance - claimed, rng.randint(1, balance + 1)])),
            "refundNonce": str(nonce),
        }
        if rng.random() < 0.5:
            refund["claims"] = [_claim_row(world, rng, balance, claimed)]
        if rng.random() < 0.15:
            refund["refundAuthorizerSignature"] = "0x" + secrets.token_hex(65)
        return _channel(world, refund)
    # auth-capture: the shapes, mostly refused by the parser.
    requirements = {
        "scheme": "auth-capture", "network": world.network, "asset": world.asset.address,
        "amount": "1000", "payTo": rng.choice([world.merchant, world.stranger]),
        "maxTimeoutSeconds": 300,
        "extra": {"captureAuthorizer": world.operator, "receiverAuthorizer": world.authorizer,
                  "name": "USDC", "version": "2"},
    }  # fmt: skip
    payload = {"type": rng.choice(["authorize", "capture", "void", "refund"]), "amount": "1"}
    return {"x402Version": 2, "paymentRequirements": requirements,
            "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload}}  # fmt: skip


KINDS: Final = (
    "exact_merchant", "exact_self", "exact_junk", "exact_stranger", "channel_deposit",
    "channel_voucher", "channel_claim", "channel_sweep", "channel_refund", "auth_capture",
)  # fmt: skip


def mutate(value: Any, rng: random.Random) -> Any:
    """One random change somewhere in a JSON tree (a new tree; the old one is untouched)."""
    if isinstance(value, dict) and value and rng.random() < 0.75:
        key = rng.choice(list(value))
        copy = dict(value)
        roll = rng.random()
        if roll < 0.15:
            del copy[key]
        elif roll < 0.6:
            copy[key] = mutate(copy[key], rng)
        else:
            copy[key] = rng.choice(NASTY)
        return copy
    if isinstance(value, list) and value and rng.random() < 0.75:
        copy_list = list(value)
        index = rng.randrange(len(copy_list))
        copy_list[index] = mutate(copy_list[index], rng)
        return copy_list
    return rng.choice(NASTY)


# ---------------------------------------------------------------- one case


@dataclass
class Case:
    index: int
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    kind: str
    keyed: bool
    own_host: bool
    as_json: bool
    as_built: bool = True  # the body is the one built, not mutated

    def describe(self) -> str:
        return (
            f"#{self.index} {self.method} {self.path} kind={self.kind} keyed={self.keyed} "
            f"host_ok={self.own_host} json={self.as_json} body={self.body[:300]!r}"
        )


def _headers(
    key: str | None = API_KEY, host: bytes = b"127.0.0.1:8402"
) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", host), (b"content-type", b"application/json")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return headers


def make_case(world: World, index: int, seed: int) -> Case:
    rng = random.Random(f"{seed}/{index}")
    method = rng.choices(["POST", "GET", "post", "PUT", "OPTIONS"], [90, 4, 2, 2, 2])[0]
    path = rng.choices(["/settle", "/verify", "/supported", "//settle", "/settle/", "/x"],
                       [55, 35, 4, 2, 2, 2])[0]  # fmt: skip
    host = rng.choices([b"127.0.0.1:8402", b"localhost", b"evil.example", b"", b"[::1]:1"],
                       [90, 4, 3, 2, 1])[0]  # fmt: skip
    key_roll = rng.random()
    key = API_KEY if key_roll < 0.85 else (None if key_roll < 0.93 else API_KEY + "x")
    kind_type = rng.choices(
        [b"application/json", b"application/json; charset=utf-8", b"text/plain", b""],
        [88, 6, 4, 2],
    )[0]
    headers = [(b"host", host)] if host else []
    if kind_type:
        headers.append((b"content-type", kind_type))
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    kind = rng.choice(KINDS)
    roll, as_built = rng.random(), True
    if roll < 0.06:
        kind = "not_a_payment"
    if roll < 0.03:
        body = rng.choice([b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"a":NaN}'])
    elif roll < 0.05:
        depth = rng.choice([17, 40, 5000])
        body = b'{"x402Version":2,"paymentPayload":' + b"[" * depth + b"]" * depth + b"}"
    elif roll < 0.06:
        body = b'{"pad":"' + b"a" * rng.choice([70_000, 200_000]) + b'"}'
    else:
        tree: Any = make_body(world, rng, kind)
        if rng.random() < 0.45:
            as_built = False
            for _ in range(rng.randint(1, 4)):
                tree = mutate(tree, rng)
        body = json.dumps(tree).encode()
    own_host = host in (b"127.0.0.1:8402", b"localhost", b"[::1]:1")
    as_json = kind_type.startswith(b"application/json")
    keyed = key == API_KEY
    return Case(index, method, path, headers, body, kind, keyed, own_host, as_json, as_built)


async def call(
    world: World,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    timeout_s: float,
    settle_s: float = 0.0,
) -> fuzzing.Outcome:
    """One request to the facilitator, as its server would hand it over."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    scope = fuzzing.scope_of(
        method, path.encode(), b"", headers, client=("127.0.0.1", 1), port=8402
    )
    return await fuzzing.drive(world.app, scope, [body], timeout_s, settle_s=settle_s)


# ---------------------------------------------------------------- the run


@dataclass
class Tally(fuzzing.Tally):
    kinds_moved: Counter[str] = field(default_factory=Counter)


async def run_cases(world: World, indexes: range | list[int], args: argparse.Namespace) -> Tally:
    tally = Tally()
    progress = fuzzing.Progress("fuzz", len(indexes))
    shown = fuzzing.Shown(args.show, args.only is not None)
    before, head = books(world), world.chain.block_number()
    _check_books(world, before, tally)
    for count, index in enumerate(indexes, 1):
        case = make_case(world, index, args.seed)
        outcome = await call(world, case.method, case.path, case.headers, case.body,
                             timeout_s=args.timeout_s, settle_s=SETTLE_AFTER_HANG_S)  # fmt: skip
        status, body, error = outcome.status, bytes(outcome.body), outcome.error or ""
        if error and error != "hang":
            status = 500  # any exception out of the app is a 500
        tally.cases += 1
        tally.kinds[case.kind + ("" if case.as_built else "~")] += 1
        tally.statuses["error" if error == "hang" else str(status)] += 1
        found: list[str] = []
        if error == "hang":
            found.append("hang")
        elif status >= 500:
            found.append("status_5xx")
        # Money moves only in a transaction, and the memory chain mines a block
        # for each one, whoever sends it: a case that mined nothing moved
        # nothing, so the books are read only when the head moved.
        broken: list[str] = []
        if world.chain.block_number() != head:
            after, head = books(world), world.chain.block_number()
            world.snapshot = None
            broken = money_rules(case, status, body, before, after)
            tally.kinds_moved[case.kind] += 1
            before = after
        if broken:
            found.append("money_moved_unallowed")
        _reason(tally, body)
        for failure in found:
            tally.failures[failure] += 1
            if shown.due(failure):
                fuzzing.show_found(
                    f"{failure} {broken}", case.describe(), status, body[:300], error[-2000:]
                )
        progress.tick(
            count,
            f"5xx {tally.failures['status_5xx']}, "
            f"money {tally.failures['money_moved_unallowed']}, hangs {tally.failures['hang']}",
        )
    _check_books(world, books(world), tally)
    return tally


def _check_books(world: World, read: Books, tally: Tally) -> None:
    """``books`` must agree with the library's readers, or its verdicts mean nothing."""
    if read != books_one_by_one(world):
        tally.failures["books_disagree"] += 1
        print(f"FOUND books_disagree: {read} != {books_one_by_one(world)}", file=sys.stderr)


def _reason(tally: Tally, body: bytes) -> None:
    data = fuzzing.json_object(body) or {}
    reason = data.get("invalidReason") or data.get("errorReason") or data.get("error")
    if isinstance(reason, str):
        tally.reasons[reason[:60]] += 1


def main(argv: list[str] | None = None, *, world_factory: Callable[[], World] = build_world) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fuzzing.add_case_arguments(parser, timeout_s=30.0, shards=True)
    args = parser.parse_args(argv)
    indexes = fuzzing.case_indexes(parser, args)
    world = world_factory()
    started = time.perf_counter()
    tally = asyncio.run(run_cases(world, indexes, args))
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        **fuzzing.report_head("fuzz_facilitator", tally),
        "money_moved_unallowed": tally.failures["money_moved_unallowed"],
        "hangs": tally.failures["hang"],
        "books_disagree": tally.failures["books_disagree"],
        "seed": args.seed,
        "start": indexes[0],
        "cases_per_s": fuzzing.cases_per_s(tally, seconds),
        "statuses": dict(sorted(tally.statuses.items())),
        "moved_by_kind": dict(sorted(tally.kinds_moved.items())),
        "cases_by_kind": dict(sorted(tally.kinds.items())),
        "reasons": dict(sorted(tally.reasons.items())),
    }
    return fuzzing.finish(report, sum(tally.failures.values()) > 0)


if __name__ == "__main__":
    sys.exit(main())
