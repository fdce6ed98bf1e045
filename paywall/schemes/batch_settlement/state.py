"""Per-channel server state for x402 ``batch-settlement``, in the payment database.

One row per channel (table ``paywall_channel``), on SQLite or PostgreSQL:

- the channel's immutable config (its id is that config's EIP-712 hash);
- a mirror of the chain: ``balance``, ``total_claimed``,
  ``withdraw_requested_at``, ``refund_nonce`` and when they were read;
- what the server has earned: ``charged`` (the spec's
  ``chargedCumulativeAmount``), and the highest voucher the payer signed
  (``signed_max`` with its ``signature``): the one to claim.

:meth:`ChannelStore.charge` is the paid path. It checks a voucher against the
offer's terms and the config (pure, before any lock), recovers a plain EOA
voucher locally, then, holding the channel's row, checks the cumulative amount
(``charged + price``, exactly, as the spec says), the claimed total and the
balance, and records the charge. The lock serializes every request on one
channel across threads and processes: SQLite takes its write lock at
``BEGIN IMMEDIATE``; PostgreSQL locks the row with ``SELECT … FOR UPDATE``.
Only one short statement batch runs under the lock; chain reads happen before.

Dynamic price: the handler may charge ``actual`` up to the ceiling ``price``.
``charged`` grows by ``actual`` only, and the next voucher is checked against
``charged + ceiling``.

Refusals are :class:`ChargeRefused` values with the spec's error code; a
cumulative-amount refusal carries the record, so the middleware can answer the
corrective 402 (``channelState`` + ``voucherState``). When the server lost its
state, :meth:`ChannelStore.recover` rebuilds it from the chain
(``ChannelCreated`` events for the configs, the ``channels`` view for the
amounts): ``charged`` restarts at ``totalClaimed``, and vouchers that were
never claimed are forfeited, as the spec says.

Charges are leases (:mod:`farthing.paywall.schemes.batch_settlement.holds`): the paywall
calls :meth:`ChannelStore.charge` with ``hold_s``, which **holds** the ceiling
(``held``, ``held_until_ns``) instead of adding it to ``charged``; once the
answer is sent, :meth:`ChannelStore.update_hold` makes it final (or frees it
when the handler failed). A hold whose process died lapses at its deadline
and the next charge drops it. The next voucher builds on ``charged + held``.

Amounts are ints of the token's atomic units, stored as decimal text (a
``uint128`` does not fit a BIGINT and must never pass through a float).
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar, cast

import anyio.to_thread
from eth_abi.abi import decode as abi_decode
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from farthing.invariant import invariant
from farthing.paywall.errors import PaymentStoreError, PaywallConfigError
from farthing.paywall.records.database import (
    READ_ONLY_OPTION,
    create_tables,
    database_errors,
    open_paywall_database,
)
from farthing.paywall.records.group_commit import GroupCommitter
from farthing.paywall.schemes.batch_settlement.columns import add_missing_channel_columns
from farthing.paywall.schemes.batch_settlement.contract import (
    ESCROW_EVENT_TOPICS,
    ChannelEscrow,
    ChannelSnapshot,
)
from farthing.paywall.schemes.batch_settlement.holds import (
    Hold,
    charged_after,
    held_after,
    hold_params,
    hold_sql,
    live_view,
)
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    SignedVoucher,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CHANNEL_ID_MISMATCH,
    ERR_CHANNEL_NOT_FOUND,
    ERR_CHANNEL_STATE_READ_FAILED,
    ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE,
    ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
    ERR_CUMULATIVE_EXCEEDS_BALANCE,
    ERR_INVALID_VOUCHER_SIGNATURE,
    ERR_RECEIVER_AUTHORIZER_MISMATCH,
    ERR_RECEIVER_MISMATCH,
    ERR_TOKEN_MISMATCH,
    ERR_WITHDRAW_DELAY_MISMATCH,
    ChannelStateWire,
    VoucherStateWire,
)
from farthing.wallet.address import checksum
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.errors import WalletError

__all__ = [
    "CHANNELS",
    "STATE_TTL_S_DEFAULT",
    "ChannelRecord",
    "ChannelStore",
    "ChannelTerms",
    "ChargeAccepted",
    "ChargeRefused",
]

_METADATA: Final = MetaData()
_ZERO_ADDRESS: Final = "0x" + "00" * 20
_CONFIG_ABI: Final = ["(address,address,address,address,address,uint40,bytes32)"]

# How old the chain mirror may be before a charge re-reads it (the spec's
# "fresh" mirrored state for local verification of a plain EOA voucher).
STATE_TTL_S_DEFAULT: Final = 60.0

CHANNELS: Final = Table(
    "paywall_channel",
    _METADATA,
    Column("channel_id", String(66), primary_key=True),
    Column("network", String(32), nullable=False),
    Column("payer", String(42), nullable=False),
    Column("payer_authorizer", String(42), nullable=False),
    Column("receiver", String(42), nullable=False),
    Column("receiver_authorizer", String(42), nullable=False),
    Column("token", String(42), nullable=False),
    Column("withdraw_delay_s", BigInteger, nullable=False),
    Column("salt", String(66), nullable=False),
    # Mirrored from the chain (uint128 / uint256 as decimal text).
    Column("balance", String(40), nullable=False),
    Column("total_claimed", String(40), nullable=False),
    Column("withdraw_requested_at", BigInteger, nullable=False),
    Column("refund_nonce", String(78), nullable=False),
    Column("onchain_synced_at_ns", BigInteger, nullable=False),
    # Added later (paywall/schemes/batch_settlement/columns.py brings old tables up to date):
    # the pending withdrawal's amount (mirrored), and a cooperative refund in flight.
    Column("withdraw_amount", String(40), nullable=False, server_default="0"),
    Column("refunding", String(40), nullable=False, server_default="0"),
    # Charges held while their answers are produced (paywall/schemes/batch_settlement/holds.py).
    Column("held", String(40), nullable=False, server_default="0"),
    Column("held_until_ns", BigInteger, nullable=False, server_default="0"),
    Column("hold_epoch", BigInteger, nullable=False, server_default="0"),
    # Earned here.
    Column("charged", String(40), nullable=False),
    Column("signed_max", String(40), nullable=False),
    Column("signature", Text),  # NULL until a voucher is accepted (or after recovery)
    Column("last_request_at_ns", BigInteger),
    Column("updated_at_ns", BigInteger, nullable=False),
)


def _now_ns() -> int:
    return time.time_ns()


def _live_held(record: ChannelRecord) -> int:
    """What the row holds for requests still being answered (lapsed holds count nothing)."""
    return record.held if record.held_until_ns > _now_ns() else 0


def _hold_ns(hold_s: float | None) -> int | None:
    if hold_s is None:
        return None
    if isinstance(hold_s, bool) or not isinstance(hold_s, (int, float)) or not 0 < hold_s <= 86400:
        raise PaywallConfigError("hold_s must be more than 0 and at most 86400 s")
    return int(hold_s * 1e9)


def _seconds_left(record: ChannelRecord) -> int:
    """Whole seconds until the row's holds lapse (at least 1): a busy payer's wait."""
    return max(1, -(-(record.held_until_ns - _now_ns()) // 1_000_000_000))


def _accepted(
    view: ChannelRecord,
    after: ChannelRecord,
    price: int,
    actual: int,
    now: int,
    hold_ns: int | None,
) -> ChargeAccepted:
    """The outcome of a written charge, checked against the row it was decided on."""
    if hold_ns is None:
        invariant(after.charged == view.charged + actual, "the charge was recorded once")
        return ChargeAccepted(after, actual)
    invariant(
        after.held == view.held + price and after.charged == view.charged,
        "the hold was recorded once",
    )
    hold = Hold(after.channel_id, price, after.hold_epoch, now, now + hold_ns)
    return ChargeAccepted(after, price, hold)


@dataclass(frozen=True, slots=True)
class ChannelTerms:
    """What an offer fixes in every channel that pays it: the ``payTo``, ``asset`` and ``extra``."""

    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay_s: int

    def __post_init__(self) -> None:
        for name in ("receiver", "receiver_authorizer", "token"):
            object.__setattr__(self, name, checksum(getattr(self, name)))

    def refusal(self, config: ChannelConfig) -> str | None:
        """The spec's code for a config that does not belong to this offer, or ``None``."""
        if config.receiver != self.receiver:
            return ERR_RECEIVER_MISMATCH
        if config.receiver_authorizer != self.receiver_authorizer:
            return ERR_RECEIVER_AUTHORIZER_MISMATCH
        if config.token != self.token:
            return ERR_TOKEN_MISMATCH
        if config.withdraw_delay_s != self.withdraw_delay_s:
            return ERR_WITHDRAW_DELAY_MISMATCH
        return None


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """One channel as the server knows it."""

    channel_id: bytes
    network: str
    config: ChannelConfig
    balance: int
    total_claimed: int
    withdraw_requested_at: int
    refund_nonce: int
    onchain_synced_at_ns: int
    charged: int
    signed_max: int
    signature: bytes | None
    last_request_at_ns: int | None
    held: int = 0  # held by requests still being answered (channel_holds)
    held_until_ns: int = 0  # when the latest of those holds lapses
    hold_epoch: int = 0  # bumped whenever lapsed holds are dropped
    withdraw_amount: int = 0  # what the pending timed withdrawal takes out (0: none)
    refunding: int = 0  # what a cooperative refund in flight returns (0: none)

    @property
    def unclaimed(self) -> int:
        """Earned here but not yet claimed on chain: the receivable."""
        return self.charged - self.total_claimed

    @property
    def spendable(self) -> int:
        """The highest cumulative voucher that stays claimable whatever the payer does next.

        A pending timed withdrawal may finalize, and a refund in flight may
        land, before our next claim does; either takes its amount out of the
        balance. A voucher up to ``balance - withdrawal - refund`` is still
        covered afterwards (``finalizeWithdraw`` pays out at most its amount),
        so it can be claimed whenever the claim lands.
        """
        withdrawing = self.withdraw_amount if self.withdraw_requested_at > 0 else 0
        return max(0, self.balance - withdrawing - self.refunding)

    def channel_state(self) -> ChannelStateWire:
        """``channelState`` for a PAYMENT-RESPONSE or a corrective 402."""
        return ChannelStateWire(
            channel_id=self.channel_id,
            balance=self.balance,
            total_claimed=self.total_claimed,
            withdraw_requested_at=self.withdraw_requested_at,
            refund_nonce=self.refund_nonce,
            # What the next voucher builds on: final charges and live holds.
            charged_cumulative_amount=self.charged + _live_held(self),
        )

    def voucher_state(self) -> VoucherStateWire | None:
        """``voucherState``: the payer's last voucher, for the client to check before resyncing."""
        if self.signature is None:
            return None
        return VoucherStateWire(self.signed_max, self.signature)


@dataclass(frozen=True, slots=True)
class ChargeAccepted:
    """The voucher was good and ``charged_amount`` is recorded; ``record`` is the state after."""

    record: ChannelRecord
    charged_amount: int
    hold: Hold | None = None  # the lease, when the charge is held (charge(hold_s=...))


@dataclass(frozen=True, slots=True)
class ChargeRefused:
    """Nothing was recorded. ``reason`` is the spec's code; ``record`` (when known) is the
    server's state, which a cumulative-amount refusal sends back as the corrective 402."""

    reason: str
    detail: str
    record: ChannelRecord | None = None


def _record(row: Any, config: ChannelConfig | None = None) -> ChannelRecord:
    if config is None:
        config = ChannelConfig(
            payer=row.payer,
            payer_authorizer=row.payer_authorizer,
            receiver=row.receiver,
            receiver_authorizer=row.receiver_authorizer,
            token=row.token,
            withdraw_delay_s=int(row.withdraw_delay_s),
            salt=row.salt,
        )
    record = ChannelRecord(
        channel_id=bytes.fromhex(row.channel_id[2:]),
        network=row.network,
        config=config,
        balance=int(row.balance),
        total_claimed=int(row.total_claimed),
        withdraw_requested_at=int(row.withdraw_requested_at),
        refund_nonce=int(row.refund_nonce),
        onchain_synced_at_ns=int(row.onchain_synced_at_ns),
        charged=int(row.charged),
        signed_max=int(row.signed_max),
        signature=None if row.signature is None else bytes.fromhex(row.signature[2:]),
        last_request_at_ns=row.last_request_at_ns,
        held=int(row.held),
        held_until_ns=int(row.held_until_ns),
        hold_epoch=int(row.hold_epoch),
        withdraw_amount=int(row.withdraw_amount),
        refunding=int(row.refunding),
    )
    # Read back, checked again: what money depends on must hold after storage too.
    invariant(record.charged <= record.signed_max, "charged never exceeds the signed ceiling")
    invariant(record.held >= 0, "a held total is never negative")
    return record


# A row as the hot path's driver-level SELECT returns it, in table order.
_Row = namedtuple("_Row", [column.name for column in CHANNELS.columns])  # type: ignore[misc]

# Compare-and-swap rounds before a charge falls back to locking the row.
_SWAP_ATTEMPTS: Final = 8


@dataclass(frozen=True, slots=True)
class _Swap:
    """One compare-and-swap UPDATE for a driver to run: it wrote the row, or it did not."""

    sql: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Contended:
    """The compare-and-swap gave up (contended, or the mirror went stale): lock the row."""

    record: ChannelRecord


_T = TypeVar("_T")


def _drive(steps: Generator[_Swap, bool, _T], write: Callable[[_Swap], bool]) -> _T:
    """Run a decision's writes in this thread; its outcome."""
    try:
        swap = next(steps)
        while True:
            swap = steps.send(write(swap))
    except StopIteration as stop:
        return cast(_T, stop.value)


async def _drive_async(
    steps: Generator[_Swap, bool, _T],
    write: Callable[[str, dict[str, Any]], Awaitable[int]],
) -> _T:
    """Run a decision's writes through the group committer from the loop; its outcome."""
    try:
        swap = next(steps)
        while True:
            written = await write(swap.sql, swap.params)
            invariant(written in (0, 1), "a channel id names one row")
            swap = steps.send(written == 1)
    except StopIteration as stop:
        return cast(_T, stop.value)


def _hot_sql(dialect: str) -> tuple[str, str, str]:
    """The hot path's SELECT and compare-and-swap UPDATEs, in the driver's own paramstyle."""

    def p(name: str) -> str:
        return f":{name}" if dialect == "sqlite" else f"%({name})s"

    table = CHANNELS.name
    columns = ", ".join(column.name for column in CHANNELS.columns)
    select_sql = f"SELECT {columns} FROM {table} WHERE channel_id = {p('channel_id')}"
    swap_sql = (
        f"UPDATE {table} SET charged = {p('charged')}, signed_max = {p('signed_max')}, "
        f"signature = {p('signature')}, last_request_at_ns = {p('now')}, "
        f"held = {p('held')}, held_until_ns = {p('held_until_ns')}, "
        f"hold_epoch = {p('hold_epoch')}, "
        f"updated_at_ns = {p('now')} "
        f"WHERE channel_id = {p('channel_id')} AND charged = {p('was_charged')} "
        f"AND held = {p('was_held')} AND hold_epoch = {p('was_hold_epoch')} "
        f"AND balance = {p('was_balance')} AND total_claimed = {p('was_total_claimed')} "
        f"AND withdraw_requested_at = {p('was_withdraw_requested_at')} "
        f"AND onchain_synced_at_ns = {p('was_synced_at_ns')} "
        f"AND refunding = {p('was_refunding')}"
    )
    release_sql = (
        f"UPDATE {table} SET charged = {p('charged')}, updated_at_ns = {p('now')} "
        f"WHERE channel_id = {p('channel_id')} AND charged = {p('was_charged')} "
        f"AND total_claimed = {p('was_total_claimed')}"
    )
    return select_sql, swap_sql, release_sql


def _mirror_values(snapshot: ChannelSnapshot, now: int) -> dict[str, Any]:
    return {
        "balance": str(snapshot.balance),
        "total_claimed": str(snapshot.total_claimed),
        "withdraw_requested_at": snapshot.withdraw_requested_at,
        "withdraw_amount": str(snapshot.withdraw_amount if snapshot.withdraw_requested_at else 0),
        "refund_nonce": str(snapshot.refund_nonce),
        "onchain_synced_at_ns": now,
        "updated_at_ns": now,
    }


def _store_error(display_url: str, exc: BaseException) -> PaymentStoreError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PaymentStoreError(f"the channel database at {display_url} failed: {detail}")


class ChannelStore:
    """Channel rows in SQLite (a file shared by processes) or PostgreSQL.

    ``domain`` fixes the chain and escrow the channel ids belong to. With an
    ``escrow``, unknown channels and mirrors older than ``state_ttl_s`` are read
    from the chain before a charge; without one, the caller keeps the mirror
    current through :meth:`mirror`.
    """

    def __init__(
        self,
        url: str,
        *,
        domain: ChannelDomain,
        network: str,
        escrow: ChannelEscrow | None = None,
        state_ttl_s: float = STATE_TTL_S_DEFAULT,
        busy_timeout_s: float = 10.0,
    ) -> None:
        database = open_paywall_database(url, busy_timeout_s=busy_timeout_s, immediate_writes=True)
        self.engine = database.engine
        if state_ttl_s < 0:
            raise PaywallConfigError("state_ttl_s must not be negative")
        self.dialect = database.dialect
        self.display_url = database.display_url
        self.domain = domain
        self.network = network
        self.escrow = escrow
        self.state_ttl_ns = int(state_ttl_s * 1e9)
        self._sql_select, self._sql_swap, self._sql_release = _hot_sql(self.dialect)
        self._sql_hold = hold_sql(self.dialect, CHANNELS.name)
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        # SQLite: hot-path reads and the group committer's writer thread each
        # use their thread's own driver connection (_own_connection).
        self._committer = GroupCommitter(self._own_connection) if self.dialect == "sqlite" else None
        self._owned = threading.local()
        self._owned_lock = threading.Lock()
        self._owned_fairies: list[Any] = []
        # Set when a chain read shows a new timed withdrawal on a channel with
        # unclaimed earnings: the claimer wakes at once rather than at its next tick.
        self.withdrawal_seen = threading.Event()
        with self._errors():
            create_tables(self.engine, _METADATA)
            add_missing_channel_columns(self.engine, CHANNELS.name)

    def __repr__(self) -> str:
        return f"ChannelStore({self.display_url!r})"

    def dispose(self) -> None:
        if self._committer is not None:
            self._committer.close()
        with self._owned_lock:
            fairies, self._owned_fairies = self._owned_fairies, []
            self._owned = threading.local()
        for fairy in fairies:
            fairy.close()
        self.engine.dispose()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        with database_errors("channel database", self.display_url):
            yield

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._errors(), self.engine.begin() as connection:
            yield connection

    # ------------------------------------------------------------ reads

    @contextmanager
    def _reader(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection.execution_options(**{READ_ONLY_OPTION: True})

    @staticmethod
    def _key(channel_id: bytes) -> str:
        return "0x" + channel_id.hex()

    def get(self, channel_id: bytes) -> ChannelRecord | None:
        with self._errors(), self._reader() as connection:
            row = connection.execute(
                select(CHANNELS).where(CHANNELS.c.channel_id == self._key(channel_id))
            ).first()
            connection.rollback()
        return None if row is None else _record(row)

    def records(self) -> list[ChannelRecord]:
        with self._errors(), self._reader() as connection:
            rows = connection.execute(select(CHANNELS).order_by(CHANNELS.c.channel_id)).all()
            connection.rollback()
        return [_record(row) for row in rows]

    # ------------------------------------------------------------ chain mirror

    def _insert(
        self, connection: Connection, config: ChannelConfig, snapshot: ChannelSnapshot
    ) -> None:
        """Create a row from the chain, if none exists: ``charged`` starts at ``totalClaimed``."""
        now = _now_ns()
        insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        values = {
            "channel_id": self._key(snapshot.channel_id),
            "network": self.network,
            "payer": config.payer,
            "payer_authorizer": config.payer_authorizer,
            "receiver": config.receiver,
            "receiver_authorizer": config.receiver_authorizer,
            "token": config.token,
            "withdraw_delay_s": config.withdraw_delay_s,
            "salt": "0x" + config.salt.hex(),
            "charged": str(snapshot.total_claimed),
            "signed_max": str(snapshot.total_claimed),
            "signature": None,
            "last_request_at_ns": None,
            "refunding": "0",
            **_mirror_values(snapshot, now),
        }
        connection.execute(insert(CHANNELS).values(**values).on_conflict_do_nothing())

    def _apply_mirror(
        self, connection: Connection, current: ChannelRecord, snapshot: ChannelSnapshot
    ) -> None:
        values = _mirror_values(snapshot, _now_ns())
        if snapshot.total_claimed > current.charged:
            # Claimed on chain beyond what we booked (state restored from an old
            # backup): the chain is the floor, never charge that part again.
            values["charged"] = str(snapshot.total_claimed)
            values["signed_max"] = str(max(current.signed_max, snapshot.total_claimed))
        started = snapshot.withdraw_requested_at
        new_withdrawal = started != 0 and started != current.withdraw_requested_at
        if new_withdrawal and current.charged > snapshot.total_claimed:
            self.withdrawal_seen.set()
        if snapshot.refund_nonce > current.refund_nonce:
            # A refund landed (ours or another): the balance read is after it.
            values["refunding"] = "0"
        connection.execute(
            update(CHANNELS)
            .where(CHANNELS.c.channel_id == self._key(current.channel_id))
            .values(**values)
        )

    def _locked(self, connection: Connection, channel_id: bytes) -> ChannelRecord | None:
        row = connection.execute(
            select(CHANNELS).where(CHANNELS.c.channel_id == self._key(channel_id)).with_for_update()
        ).first()
        return None if row is None else _record(row)

    def mirror(self, config: ChannelConfig, snapshot: ChannelSnapshot) -> ChannelRecord:
        """Record a chain snapshot of a channel (after a deposit, claim, refund or a read)."""
        invariant(
            self.domain.channel_id(config) == snapshot.channel_id,
            "a snapshot belongs to its config's channel",
        )
        with self._begin() as connection:
            self._insert(connection, config, snapshot)
            current = self._locked(connection, snapshot.channel_id)
            invariant(current is not None, "the row exists after its insert")
            assert current is not None  # for mypy; the invariant above is the check
            self._apply_mirror(connection, current, snapshot)
            after = self._locked(connection, snapshot.channel_id)
        assert after is not None
        return after

    def _read_chain(self, channel_id: bytes) -> ChannelSnapshot | ChargeRefused:
        invariant(self.escrow is not None, "reading the chain needs an escrow")
        assert self.escrow is not None
        try:
            return self.escrow.snapshot(channel_id)
        except WalletError:
            return ChargeRefused(ERR_CHANNEL_STATE_READ_FAILED, "the escrow could not be read")

    # ------------------------------------------------------------ the paid path

    def check_voucher(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        *,
        signature_verified: bool = False,
    ) -> ChargeRefused | None:
        """The checks that need no state: id, terms, and the voucher's signer.

        A plain EOA ``payerAuthorizer`` is recovered here. A zero one means the
        payer may be an ERC-1271 wallet: the caller must have had the
        facilitator verify it (``signature_verified=True``).
        """
        if self.domain.channel_id(config) != voucher.channel_id:
            return ChargeRefused(ERR_CHANNEL_ID_MISMATCH, "the config does not hash to channelId")
        reason = terms.refusal(config)
        if reason is not None:
            return ChargeRefused(reason, "the channel config does not match the offer")
        if config.payer_authorizer == checksum(_ZERO_ADDRESS):
            if not signature_verified:
                return ChargeRefused(
                    ERR_INVALID_VOUCHER_SIGNATURE, "a smart-wallet voucher needs the facilitator"
                )
            return None
        digest = self.domain.voucher_digest(voucher.channel_id, voucher.max_claimable_amount)
        if recover_digest(digest, voucher.signature) != config.payer_authorizer:
            return ChargeRefused(
                ERR_INVALID_VOUCHER_SIGNATURE, "the voucher is not signed by payerAuthorizer"
            )
        return None

    def charge(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        *,
        price: int,
        actual: int,
        signature_verified: bool = False,
        checked: bool = False,
        hold_s: float | None = None,
    ) -> ChargeAccepted | ChargeRefused:
        """Check ``voucher`` for one request whose ceiling is ``price`` and record ``actual``.

        With ``hold_s`` the ceiling is **held** for that long instead (``actual``
        is then ignored): :meth:`update_hold` makes it final or frees it, and
        it lapses if nobody does (see :mod:`farthing.paywall.schemes.batch_settlement.holds`).

        Atomic: either the charge and the voucher are recorded together, or
        nothing is. Any number of threads or processes may call this for one
        channel; each write is a compare-and-swap on the row, so they take turns.

        ``checked=True`` says the caller already ran :meth:`check_voucher` on
        these exact ``terms``, ``config`` and ``voucher`` and it passed (the
        paywall does, before a deposit reaches the chain); it is not run twice.
        """
        refused = self._admit(terms, config, voucher, price, actual, signature_verified, checked)
        if refused is not None:
            return refused
        hold_ns = _hold_ns(hold_s)
        known = self._fetch(voucher.channel_id, config)
        if self._hot(known):
            assert known is not None
            steps = self._swap_steps(known, voucher, price, actual, hold_ns)
            outcome = _drive(steps, self._write)
            if not isinstance(outcome, _Contended):
                return outcome
            known = outcome.record
        return self._charge_locked(known, config, voucher, price, actual, hold_ns)

    async def charge_async(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        *,
        price: int,
        actual: int,
        signature_verified: bool = False,
        checked: bool = False,
        hold_s: float | None = None,
    ) -> ChargeAccepted | ChargeRefused:
        """:meth:`charge` for the event loop.

        On SQLite the hot path runs on the loop itself: the read and the
        checks are short, and the write joins the writer thread's next batch,
        so a voucher costs no thread hand-off of its own. A charge that must
        read the chain or lock the row, and every charge on PostgreSQL (whose
        reads are round trips), runs in a worker thread.
        """
        if self._committer is None:
            outcome: ChargeAccepted | ChargeRefused = await anyio.to_thread.run_sync(
                lambda: self.charge(
                    terms,
                    config,
                    voucher,
                    price=price,
                    actual=actual,
                    signature_verified=signature_verified,
                    checked=checked,
                    hold_s=hold_s,
                )
            )
            return outcome
        refused = self._admit(terms, config, voucher, price, actual, signature_verified, checked)
        if refused is not None:
            return refused
        hold_ns = _hold_ns(hold_s)
        known = self._fetch(voucher.channel_id, config)
        if self._hot(known):
            assert known is not None
            steps = self._swap_steps(known, voucher, price, actual, hold_ns)
            swapped = await _drive_async(steps, self._committer.execute_async)
            if not isinstance(swapped, _Contended):
                return swapped
            known = swapped.record
        locked: ChargeAccepted | ChargeRefused = await anyio.to_thread.run_sync(
            lambda: self._charge_locked(known, config, voucher, price, actual, hold_ns)
        )
        return locked

    def _admit(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        price: int,
        actual: int,
        signature_verified: bool,
        checked: bool,
    ) -> ChargeRefused | None:
        """What needs no row: the amounts' types, the voucher's checks, actual within price."""
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise PaywallConfigError("price must be a positive int of atomic units")
        if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
            raise PaywallConfigError("actual must be a non-negative int of atomic units")
        if not checked:
            refused = self.check_voucher(
                terms, config, voucher, signature_verified=signature_verified
            )
            if refused is not None:
                return refused
        if actual > price:
            return ChargeRefused(
                ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE, "the handler charged more than the ceiling"
            )
        return None

    def _hot(self, record: ChannelRecord | None) -> bool:
        """A known channel whose chain mirror is fresh: no chain read, no lock."""
        return record is not None and (
            self.escrow is None or _now_ns() - record.onchain_synced_at_ns <= self.state_ttl_ns
        )

    def _swap_steps(
        self,
        record: ChannelRecord,
        voucher: SignedVoucher,
        price: int,
        actual: int,
        hold_ns: int | None = None,
    ) -> Generator[_Swap, bool, ChargeAccepted | ChargeRefused | _Contended]:
        """Decide on ``record`` as read, then write only if the row still says the same.

        Yields each compare-and-swap for its driver to run (a thread's write
        or the loop's) and is sent whether it wrote. The UPDATE's WHERE names
        every column the decision read, so a row that another request or
        process changed meanwhile is not written; it is read again and
        decided again.
        """
        for _ in range(_SWAP_ATTEMPTS):
            now = _now_ns()
            view = live_view(record, now)
            refusal = self._refusal(view, voucher, price)
            if refusal is not None:
                return refusal
            after = charged_after(
                view, voucher, price=price, actual=actual, now_ns=now, hold_ns=hold_ns
            )
            if (yield self._swap(record, after, now)):
                return _accepted(view, after, price, actual, now, hold_ns)
            fresh = self._fetch(voucher.channel_id, record.config)
            if fresh is None:
                return ChargeRefused(ERR_CHANNEL_NOT_FOUND, "no deposit is known for this channel")
            record = fresh
            if not self._hot(record):
                break
        # Contended past reason, or the mirror went stale meanwhile: take the lock.
        return _Contended(record)

    def _fetch(
        self, channel_id: bytes, config: ChannelConfig | None = None
    ) -> ChannelRecord | None:
        """The row as committed, read at the driver (no ORM on the hot path).

        ``config``, when the caller has it checked, is the row's own config (the
        channel id is its hash) and is used rather than parsed again.
        """
        params = {"channel_id": self._key(channel_id)}
        if self.dialect == "sqlite":
            rows = self._sqlite_read(params)
        else:
            with self._raw() as connection:
                cursor = connection.cursor()
                try:
                    cursor.execute(self._sql_select, params)
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
                connection.commit()
        invariant(len(rows) <= 1, "a channel id names one row")
        return _record(_Row(*rows[0]), config) if rows else None

    def _sqlite_read(self, params: dict[str, Any]) -> list[Any]:
        """A SELECT on this thread's own SQLite connection (:meth:`_own_connection`).

        The rows are fetched to the end, so the statement is reset and no read
        transaction outlives the call (a live one would pin an old snapshot).
        """
        with self._own_connection() as connection:
            cursor = connection.execute(self._sql_select, params)
            try:
                return list(cursor.fetchall())
            finally:
                cursor.close()

    @contextmanager
    def _own_connection(self) -> Iterator[Any]:
        """This thread's SQLite driver connection, kept open between uses until dispose().

        A pool checkout and check-in (with its reset) cost more than the hot
        path's read or a batch's write. Driver errors become one line.
        """
        connection = getattr(self._owned, "connection", None)
        if connection is None:
            try:
                fairy = self.engine.raw_connection()
            except DBAPIError as exc:
                raise _store_error(self.display_url, exc.orig or exc) from None
            fairy.detach()  # this thread's, until dispose() closes it
            with self._owned_lock:
                self._owned_fairies.append(fairy)
            connection = fairy.dbapi_connection
            invariant(connection is not None, "a detached connection keeps its driver connection")
            assert connection is not None  # for mypy; the invariant above is the check
            self._owned.connection = connection
        try:
            yield connection
        except self._driver_error as exc:
            with suppress(self._driver_error):
                connection.rollback()
            raise _store_error(self.display_url, exc) from None

    def _swap(self, before: ChannelRecord, after: ChannelRecord, now: int) -> _Swap:
        params = {
            "channel_id": self._key(before.channel_id),
            "charged": str(after.charged),
            "signed_max": str(after.signed_max),
            "signature": None if after.signature is None else "0x" + after.signature.hex(),
            "now": now,
            "was_charged": str(before.charged),
            "was_balance": str(before.balance),
            "was_total_claimed": str(before.total_claimed),
            "was_withdraw_requested_at": before.withdraw_requested_at,
            "was_synced_at_ns": before.onchain_synced_at_ns,
            "held": str(after.held),
            "held_until_ns": after.held_until_ns,
            "hold_epoch": after.hold_epoch,
            "was_held": str(before.held),
            "was_hold_epoch": before.hold_epoch,
            "was_refunding": str(before.refunding),
        }
        return _Swap(self._sql_swap, params)

    def _write(self, swap: _Swap) -> bool:
        """Run one compare-and-swap UPDATE durably; whether it wrote the row.

        On SQLite the writes of this process's threads share commits
        (:class:`~farthing.paywall.records.group_commit.GroupCommitter`): one fsync
        for every write that queued meanwhile, and none meets SQLite's busy
        handler, which sleeps in millisecond steps. PostgreSQL takes
        concurrent writers itself.
        """
        if self._committer is not None:
            written = self._committer.execute(swap.sql, swap.params)
        else:
            with self._raw() as connection:
                cursor = connection.cursor()
                try:
                    cursor.execute(swap.sql, swap.params)
                    written = cursor.rowcount
                finally:
                    cursor.close()
                connection.commit()
        invariant(written in (0, 1), "a channel id names one row")
        return bool(written == 1)

    @contextmanager
    def _raw(self) -> Iterator[Any]:
        """A pooled driver connection; a driver error becomes one ``PaymentStoreError`` line."""
        try:
            connection = self.engine.raw_connection()
        except DBAPIError as exc:
            raise _store_error(self.display_url, exc.orig or exc) from None
        try:
            yield connection
        except self._driver_error as exc:
            connection.rollback()
            raise _store_error(self.display_url, exc) from None
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()  # back to the pool

    def _charge_locked(
        self,
        known: ChannelRecord | None,
        config: ChannelConfig,
        voucher: SignedVoucher,
        price: int,
        actual: int,
        hold_ns: int | None = None,
    ) -> ChargeAccepted | ChargeRefused:
        """The charge under the row's lock, reading the chain first when the mirror is stale."""
        # Chain reads happen here, before the lock, never under it.
        snapshot: ChannelSnapshot | None = None
        if self.escrow is not None:
            stale = known is None or _now_ns() - known.onchain_synced_at_ns > self.state_ttl_ns
            if stale:
                read = self._read_chain(voucher.channel_id)
                if isinstance(read, ChargeRefused):
                    return replace(read, record=known)
                snapshot = read

        with self._begin() as connection:
            if snapshot is not None:
                self._insert(connection, config, snapshot)
            record = self._locked(connection, voucher.channel_id)
            if record is None:
                return ChargeRefused(ERR_CHANNEL_NOT_FOUND, "no deposit is known for this channel")
            if snapshot is not None:
                self._apply_mirror(connection, record, snapshot)
                record = self._locked(connection, voucher.channel_id)
                assert record is not None
            now = _now_ns()
            view = live_view(record, now)
            refusal = self._refusal(view, voucher, price)
            if refusal is not None:
                return refusal
            planned = charged_after(
                view, voucher, price=price, actual=actual, now_ns=now, hold_ns=hold_ns
            )
            signed = planned.signature
            signature = None if signed is None else "0x" + signed.hex()
            connection.execute(
                update(CHANNELS)
                .where(CHANNELS.c.channel_id == self._key(voucher.channel_id))
                .values(
                    charged=str(planned.charged),
                    signed_max=str(planned.signed_max),
                    signature=signature,
                    held=str(planned.held),
                    held_until_ns=planned.held_until_ns,
                    hold_epoch=planned.hold_epoch,
                    last_request_at_ns=now,
                    updated_at_ns=now,
                )
            )
            after = self._locked(connection, voucher.channel_id)
        assert after is not None
        return _accepted(view, after, price, actual, now, hold_ns)

    def update_hold(
        self, hold: Hold, *, charge: int = 0, keep: int = 0, known: ChannelRecord | None = None
    ) -> ChannelRecord | None:
        """Move ``charge`` of ``hold`` into ``charged``, keep ``keep`` held, free the rest.

        ``charge=hold.amount`` makes it final (the answer was sent),
        ``keep=actual`` shrinks it to what the handler charged, and neither
        frees it (the handler failed). ``known`` is the row as this request
        last saw it: tried first, so a lone request needs no read. Returns
        the row after, or ``None`` when the hold had lapsed and a later
        charge dropped it (nothing is written then).
        """
        return _drive(self._hold_steps(hold, charge, keep, known), self._write)

    async def update_hold_async(
        self, hold: Hold, *, charge: int = 0, keep: int = 0, known: ChannelRecord | None = None
    ) -> ChannelRecord | None:
        """:meth:`update_hold` for the event loop (on SQLite, the write joins the next batch)."""
        if self._committer is None:
            updated: ChannelRecord | None = await anyio.to_thread.run_sync(
                lambda: self.update_hold(hold, charge=charge, keep=keep, known=known)
            )
            return updated
        steps = self._hold_steps(hold, charge, keep, known)
        return await _drive_async(steps, self._committer.execute_async)

    def _hold_steps(
        self, hold: Hold, charge: int, keep: int, known: ChannelRecord | None
    ) -> Generator[_Swap, bool, ChannelRecord | None]:
        for amount in (charge, keep):
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise PaywallConfigError("a hold moves non-negative ints of atomic units")
        if charge + keep > hold.amount:
            raise PaywallConfigError("a hold cannot charge or keep more than it holds")
        record = known if known is not None else self._fetch(hold.channel_id)
        while record is not None:
            after = held_after(record, hold, charge=charge, keep=keep)
            if after is None:
                return None
            now = _now_ns()
            params = hold_params(self._key(hold.channel_id), record, after, hold.epoch, now)
            if (yield _Swap(self._sql_hold, params)):
                return after
            record = self._fetch(hold.channel_id)  # changed meanwhile: decide again
        return None

    def check_refund(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        *,
        signature_verified: bool = False,
    ) -> ChannelRecord | ChargeRefused:
        """Check a refund's zero-charge voucher: its ceiling must equal ``charged`` exactly.

        Returns the channel's record (whose ``signed_max``/``signature`` the
        refund's claim row uses) or the refusal; a stale client gets the
        corrective state. Nothing is written: the refund itself happens on chain.
        """
        refused = self.check_voucher(terms, config, voucher, signature_verified=signature_verified)
        if refused is not None:
            return refused
        record = self.get(voucher.channel_id)
        if record is None:
            return ChargeRefused(ERR_CHANNEL_NOT_FOUND, "no deposit is known for this channel")
        if voucher.max_claimable_amount != record.charged:
            return ChargeRefused(
                ERR_CUMULATIVE_AMOUNT_MISMATCH,
                "a refund voucher's maxClaimableAmount must be chargedCumulativeAmount",
                record,
            )
        if voucher.max_claimable_amount < record.total_claimed:
            return ChargeRefused(
                ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
                "the voucher is below the claimed total",
                record,
            )
        return record

    @staticmethod
    def _refusal(record: ChannelRecord, voucher: SignedVoucher, price: int) -> ChargeRefused | None:
        ceiling = voucher.max_claimable_amount
        if record.balance == 0:
            return ChargeRefused(ERR_CHANNEL_NOT_FOUND, "the channel has no balance", record)
        if record.held > 0 and record.charged < ceiling <= record.charged + record.held:
            # A voucher whose request is still being answered (a copy, or a
            # retry before the hold lapsed): not stale, and not to resync on.
            return ChargeRefused(
                ERR_CHANNEL_BUSY,
                "this voucher's request is still being answered; retry it after "
                f"{_seconds_left(record)} s",
                record,
            )
        if ceiling != record.charged + record.held + price:
            # A stale client, or an old voucher replayed: the corrective 402 resyncs it.
            return ChargeRefused(
                ERR_CUMULATIVE_AMOUNT_MISMATCH,
                "maxClaimableAmount must be chargedCumulativeAmount + amount",
                record,
            )
        if ceiling <= record.total_claimed:
            return ChargeRefused(
                ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
                "the voucher is not above the claimed total",
                record,
            )
        if ceiling > record.balance:
            return ChargeRefused(
                ERR_CUMULATIVE_EXCEEDS_BALANCE, "the voucher is above the channel's balance", record
            )
        if ceiling > record.spendable:
            # A withdrawal could finalize, or a refund land, before this voucher is
            # claimed: it would then be above what the escrow holds, never paid.
            return ChargeRefused(
                ERR_CUMULATIVE_EXCEEDS_BALANCE,
                "the voucher is above the balance left after the channel's pending "
                "withdrawal or refund",
                record,
            )
        return None

    # ------------------------------------------------------------ recovery

    def recover(self, receiver: str, *, from_block: int = 0) -> list[ChannelRecord]:
        """Rebuild this receiver's channel rows from the chain after the state was lost.

        Configs come from the escrow's ``ChannelCreated`` events, amounts from
        its ``channels``/``pendingWithdrawals``/``refundNonce`` views. Rows that
        exist keep what they know (a voucher not yet claimed); missing rows
        start at ``charged = totalClaimed``. Channels of other receivers, and
        ids that do not hash from their config on this domain, are skipped.
        """
        invariant(self.escrow is not None, "recovery reads the chain through an escrow")
        assert self.escrow is not None
        receiver = checksum(receiver)
        logs = self.escrow.chain.logs(
            self.escrow.address, [ESCROW_EVENT_TOPICS["ChannelCreated"]], from_block
        )
        configs: dict[bytes, ChannelConfig] = {}
        for log in logs:
            (fields,) = abi_decode(_CONFIG_ABI, log.data)
            payer, payer_auth, to, to_auth, token, delay, salt = fields
            config = ChannelConfig(payer, payer_auth, to, to_auth, token, int(delay), bytes(salt))
            channel_id = self.domain.channel_id(config)
            if config.receiver == receiver and log.topics[1] == channel_id:
                configs[channel_id] = config
        return [
            self.mirror(config, self.escrow.snapshot(channel_id))
            for channel_id, config in configs.items()
        ]
