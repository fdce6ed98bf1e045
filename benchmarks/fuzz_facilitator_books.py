"""The fuzzer's books and money rules: what the watched accounts hold, and which moves are allowed.

``World`` is what the fuzzer builds and the books read. ``books`` reads
every watched balance and the channel in one ``eth_call`` of Multicall3
``aggregate`` (one block, one round trip); ``books_one_by_one``
reads the same through the library's own readers, so the fuzzer can check the
first against the second. ``money_rules`` says why a move was not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class World:
    """What the fuzzer built: the app, the chain and its accounts, and the channel it pays into."""

    app: Any
    chain: Any
    token: Any
    junk: Any
    escrow: Any
    payer: Any
    griefer: Any
    voucher_key: Any
    merchant: str
    stranger: str
    relayer: str
    config: Any
    domain: Any
    asset: Any
    junk_asset: Any
    network: str
    authorizer: str
    operator: str
    snapshot: Any = None  # the channel as last read; dropped whenever a block is mined
    channel_id: bytes = b""
    vouchers: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


class Judged(Protocol):
    """What the money rules read of a case: the fuzzer's ``Case``."""

    method: str
    path: str
    keyed: bool
    own_host: bool
    as_json: bool


@dataclass(frozen=True)
class Books:
    relayer_nonce: int
    payer: int
    merchant: int
    griefer: int
    escrow: int
    junk: int
    channel_balance: int
    channel_claimed: int


def _sent(world: World) -> int:
    return int(world.chain.w3.eth.get_transaction_count(world.relayer))


def books(world: World) -> Books:
    """The books in one ``eth_call`` of Multicall3 ``aggregate``: one block, one round trip."""
    from eth_abi.abi import decode, encode
    from eth_utils.crypto import keccak

    from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
    from farthing.wallet.chain import Call

    balance_of = keccak(text="balanceOf(address)")[:4]
    holders = (world.payer.address, world.merchant, world.griefer.address, world.escrow.address)
    reads = [(world.asset.address, balance_of + encode(["address"], [who])) for who in holders]
    reads.append((world.junk_asset.address, balance_of + encode(["address"], [holders[2]])))
    channels = keccak(text="channels(bytes32)")[:4] + world.channel_id
    reads.append((world.escrow.address, channels))
    data = keccak(text="aggregate((address,bytes)[])")[:4] + encode(["(address,bytes)[]"], [reads])
    result = world.chain.call(Call(MULTICALL3_ADDRESS, data))
    if not result.ok:
        raise RuntimeError(f"cannot read the books: {result}")
    _, outputs = decode(["uint256", "bytes[]"], result.return_data)
    amounts = [int(decode(["uint256"], out)[0]) for out in outputs[:5]]
    balance, claimed = decode(["uint128", "uint128"], outputs[5])
    payer, merchant, griefer, escrow, junk = amounts
    return Books(_sent(world), payer, merchant, griefer, escrow, junk, int(balance), int(claimed))


def books_one_by_one(world: World) -> Books:
    """The same books through the library's own readers, to check ``books`` against."""
    channel = world.escrow.snapshot(world.channel_id)
    token = world.token
    return Books(
        _sent(world),
        token.balance_of(world.payer.address),
        token.balance_of(world.merchant),
        token.balance_of(world.griefer.address),
        token.balance_of(world.escrow.address),
        world.junk.balance_of(world.griefer.address),
        channel.balance,
        channel.total_claimed,
    )


def _held(books: Books) -> int:
    return books.payer + books.merchant + books.griefer + books.escrow


def money_rules(case: Judged, status: int, body: bytes, before: Books, after: Books) -> list[str]:
    """Why the money that moved (if any) was not allowed; empty when it was."""
    broken: list[str] = []
    settled = case.method.upper() == "POST" and case.path == "/settle"
    allowed_caller = case.keyed and case.own_host and case.as_json and settled
    success = status == 200 and b'"success":true' in body
    if after.relayer_nonce != before.relayer_nonce and not (allowed_caller and success):
        broken.append("relayer_sent_for_a_refused_or_unauthorized_case")
    if after.junk != before.junk:
        broken.append("junk_token_moved")
    if _held(after) != _held(before):
        broken.append("token_left_the_allowed_accounts")
    if after.griefer > before.griefer:
        broken.append("griefer_gained")
    if after.merchant < before.merchant:
        broken.append("merchant_lost")
    refunded = before.channel_balance - after.channel_balance
    if refunded > 0 and refunded > before.channel_balance - after.channel_claimed:
        broken.append("refund_beyond_the_uncharged_rest")
    if after.channel_claimed < before.channel_claimed:
        broken.append("claimed_total_went_down")
    return broken
