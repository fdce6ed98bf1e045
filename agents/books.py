"""An agent's books: its accounts in the ledger, its durable policy, tasks and funding.

Each agent (``agent_id``) has, on the ledger of its asset:

* a ``FUNDING`` account: the outside world its money comes from;
* a ``BUDGET`` account ("debits must not exceed credits"), credited by every
  deposit to the agent's wallet, booked with its transaction hash (a mint's
  payer is the zero address). What is credited is what the agent can ever
  spend; the ledger answers ``exceeds_budget`` past it;
* one ``PAYEE`` account per address it pays, so the per-payee daily cap works.

Account and funding-transfer ids are derived from names and transaction
facts, never drawn at random, so two processes, a restart or a retry all
write the same ids and the ledger answers ``exists``.

Payments themselves (reserve, post, void) are in ``farthing.agents.reservations``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.orm import Session

from farthing.agents.errors import AgentConfigError
from farthing.agents.policy import SpendPolicy, default_policy
from farthing.agents.tables import (
    agent_channel_policy,
    agent_cursor,
    agent_policy,
    agent_task,
    ensure_tables,
)
from farthing.invariant import invariant
from farthing.ledger import (
    AccountCode,
    AccountFlags,
    BudgetPolicy,
    CreateTransferResult,
    LedgerDatabase,
    NewAccount,
    NewTransfer,
    PaymentDetails,
    RegisterAssetResult,
    TransferCode,
    create_accounts,
    create_transfers,
    get_budget,
    register_asset,
    set_budget,
)
from farthing.ledger import Asset as LedgerAsset
from farthing.ledger import derived_id as ledger_derived_id
from farthing.ledger.report import budget_report
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.chain import Chain
from farthing.wallet.money import Asset
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS

__all__ = ["AgentBooks", "BudgetStatus", "derived_id"]

_NAMESPACE: Final = b"farthing.agents:"
_AGENT_ID_MAX: Final = 256
_TASK_ID_MAX: Final = 128


def derived_id(*parts: str) -> int:
    """A ledger id from names: the same parts always give the same id."""
    return ledger_derived_id(_NAMESPACE, "\x1f".join(parts).encode())


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where an agent's money stands, in atomic units of its asset."""

    funded: int  # deposits booked into the budget account
    spent: int  # posted payments, all tasks
    reserved: int  # pending payments, including possible spend
    available: int  # funded - spent - reserved
    daily_limit: int | None
    daily_used: int
    total_budget: int | None
    task_id: str | None = None
    task_budget: int | None = None
    task_spent: int = 0  # posted and reserved for this task

    @property
    def task_remaining(self) -> int | None:
        if self.task_budget is None:
            return None
        return max(0, self.task_budget - self.task_spent)

    def remaining(self) -> int:
        """The most the next payment could be, counting every budget (not per-payee caps)."""
        room = [self.available]
        if self.daily_limit is not None:
            room.append(self.daily_limit - self.daily_used)
        if self.total_budget is not None:
            room.append(self.total_budget - self.spent - self.reserved)
        if self.task_remaining is not None:
            room.append(self.task_remaining)
        return max(0, min(room))


class AgentBooks:
    """One agent's accounts, policy and tasks in a ledger database."""

    def __init__(
        self, database: LedgerDatabase, *, agent_id: str, asset: Asset, ledger: int = 1
    ) -> None:
        if not agent_id.strip() or len(agent_id) > _AGENT_ID_MAX:
            raise AgentConfigError(f"an agent id is 1 to {_AGENT_ID_MAX} characters")
        if not 0 < ledger < 2**32:
            raise AgentConfigError("ledger must be a positive 32-bit number")
        self.database = database
        self.agent_id = agent_id
        self.asset = asset
        self.ledger = ledger
        self.asset_id = f"{asset.network}/erc20:{asset.address}".lower()
        self._ready = False

    def __repr__(self) -> str:
        return f"AgentBooks({self.agent_id!r}, {self.asset.symbol} on {self.asset.network})"

    # ------------------------------------------------------------ ids

    @property
    def funding_account_id(self) -> int:
        return derived_id("funding", str(self.ledger), self.agent_id)

    @property
    def budget_account_id(self) -> int:
        return derived_id("budget", str(self.ledger), self.agent_id)

    def payee_account_id(self, address: str) -> int:
        return derived_id("payee", str(self.ledger), address.lower())

    def funding_transfer_id(self, tx_hash: str, log_index: int) -> int:
        return derived_id("deposit", self.asset.network, tx_hash.lower(), str(log_index))

    # ------------------------------------------------------------ set-up

    def ensure(self) -> AgentBooks:
        """Create what is missing: tables, the asset, the accounts, a default policy."""
        if self._ready:
            return self
        ensure_tables(self.database)
        with self.database.write() as session:
            registered = register_asset(
                session=session,
                asset_id=self.asset_id,
                ledger=self.ledger,
                decimals=self.asset.decimals,
                symbol=self.asset.symbol,
            )
            if registered is RegisterAssetResult.EXISTS_WITH_DIFFERENT_LEDGER:
                row = session.get(LedgerAsset, self.asset_id)
                raise AgentConfigError(
                    f"{self.asset.symbol} at {self.asset.address} is booked on ledger "
                    f"{row.ledger if row else '?'}, not {self.ledger}; pass that ledger"
                )
            if not registered.succeeded:
                raise AgentConfigError(f"cannot register the asset in the books: {registered}")
            results = create_accounts(
                session=session,
                accounts=[
                    NewAccount(
                        id=self.funding_account_id,
                        ledger=self.ledger,
                        code=AccountCode.FUNDING,
                        label=f"funding:{self.agent_id}"[:256],
                    ),
                    NewAccount(
                        id=self.budget_account_id,
                        ledger=self.ledger,
                        code=AccountCode.BUDGET,
                        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                        label=f"budget:{self.agent_id}"[:256],
                    ),
                ],
            )
            for result in results:
                if not result.succeeded:
                    raise AgentConfigError(f"cannot create the agent's accounts: {result}")
            if get_budget(session=session, account_id=self.budget_account_id) is None:
                set_budget(
                    session=session,
                    policy=BudgetPolicy(account_id=self.budget_account_id, agent_id=self.agent_id),
                )
            if self._policy_row(session) is None:
                session.execute(
                    insert(agent_policy),
                    [_policy_values(self.agent_id, default_policy(self.asset))],
                )
        self._ready = True
        return self

    def ensure_payee(self, session: Session, address: str) -> int:
        """The payee's account id, creating the account in ``session`` if needed."""
        account_id = self.payee_account_id(address)
        (result,) = create_accounts(
            session=session,
            accounts=[
                NewAccount(
                    id=account_id,
                    ledger=self.ledger,
                    code=AccountCode.PAYEE,
                    label=f"payee:{address.lower()}",
                )
            ],
        )
        if not result.succeeded:
            raise AgentConfigError(f"cannot create the payee account for {address}: {result}")
        return account_id

    # ------------------------------------------------------------ policy

    def policy(self) -> SpendPolicy:
        """The agent's spend policy, as stored now."""
        self.ensure()
        with self.database.read() as session:
            return self.read_policy(session)

    def read_policy(self, session: Session) -> SpendPolicy:
        row = self._policy_row(session)
        budget = get_budget(session=session, account_id=self.budget_account_id)
        if row is None or budget is None:
            raise AgentConfigError(f"agent {self.agent_id} has no policy; call ensure() first")
        return SpendPolicy(
            payment_cap=budget.payment_cap,
            daily_limit=budget.daily_limit,
            payee_daily_cap=budget.payee_daily_cap,
            asset_allowlist=budget.asset_allowlist,
            total_budget=row.total_budget,
            approval_above=row.approval_above,
            approval_timeout_s=row.approval_timeout_s,
            hosts_allowed=SpendPolicy.load_list(row.hosts_allowed),
            hosts_denied=SpendPolicy.load_list(row.hosts_denied) or frozenset(),
            payees_allowed=SpendPolicy.load_list(row.payees_allowed),
            payees_denied=SpendPolicy.load_list(row.payees_denied) or frozenset(),
            **self._channel_policy(session),
        )

    def _channel_policy(self, session: Session) -> dict[str, int]:
        query = select(agent_channel_policy.c.withdraw_delay_max_s).where(
            agent_channel_policy.c.agent_id == self.agent_id
        )
        delay = session.execute(query).scalar()
        return {} if delay is None else {"channel_withdraw_delay_max_s": int(delay)}

    def set_policy(self, policy: SpendPolicy) -> None:
        """Replace the whole policy, money limits and lists together, in one database transaction."""
        self.ensure()
        with self.database.write() as session:
            result = set_budget(
                session=session,
                policy=BudgetPolicy(
                    account_id=self.budget_account_id,
                    agent_id=self.agent_id,
                    payment_cap=policy.payment_cap,
                    daily_limit=policy.daily_limit,
                    payee_daily_cap=policy.payee_daily_cap,
                    asset_allowlist=policy.asset_allowlist,
                ),
            )
            if not result.succeeded:
                raise AgentConfigError(f"the ledger refused the budget policy: {result}")
            session.execute(
                update(agent_policy)
                .where(agent_policy.c.agent_id == self.agent_id)
                .values(_policy_values(self.agent_id, policy))
            )
            channel = agent_channel_policy.c.agent_id == self.agent_id
            session.execute(delete(agent_channel_policy).where(channel))
            session.execute(
                insert(agent_channel_policy).values(
                    agent_id=self.agent_id,
                    withdraw_delay_max_s=policy.channel_withdraw_delay_max_s,
                )
            )

    def _policy_row(self, session: Session) -> Row[Any] | None:
        query = select(agent_policy).where(agent_policy.c.agent_id == self.agent_id)
        return session.execute(query).first()

    # ------------------------------------------------------------ tasks

    def start_task(self, task_id: str, budget: int, text: str = "") -> None:
        """Record a task's budget; a task id reused with another budget is refused."""
        if not task_id or len(task_id) > _TASK_ID_MAX:
            raise AgentConfigError(f"a task id is 1 to {_TASK_ID_MAX} characters")
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget < 2**63:
            raise AgentConfigError("a task budget is a non-negative int of atomic units")
        self.ensure()
        with self.database.write() as session:
            row = session.execute(select(agent_task).where(agent_task.c.task_id == task_id)).first()
            if row is None:
                session.execute(
                    insert(agent_task),
                    [
                        {
                            "task_id": task_id,
                            "agent_id": self.agent_id,
                            "budget": budget,
                            "text": text[:2048],
                            "created_ns": time.time_ns(),
                        }
                    ],
                )
            elif row.agent_id != self.agent_id or row.budget != budget:
                raise AgentConfigError(
                    f"task {task_id} already exists for agent {row.agent_id} with a budget of "
                    f"{self.asset.format(row.budget)}; start a new task id to change it"
                )

    def task_budget(self, session: Session, task_id: str) -> int | None:
        row = session.execute(
            select(agent_task.c.budget).where(agent_task.c.task_id == task_id)
        ).first()
        return None if row is None else int(row.budget)

    # ------------------------------------------------------------ funding

    def book_funding(
        self,
        *,
        amount: int,
        to_address: str,
        tx_hash: str,
        block_number: int,
        from_address: str = ZERO_ADDRESS,
        log_index: int = 0,
    ) -> CreateTransferResult:
        """Book a deposit of ``amount`` into the wallet ``to_address``; ``exists`` on a retry.

        A mint's payer is the zero address; ``log_index`` tells apart two
        deposits in one transaction.
        """
        self.ensure()
        transfer = NewTransfer(
            id=self.funding_transfer_id(tx_hash, log_index),
            debit_account_id=self.funding_account_id,
            credit_account_id=self.budget_account_id,
            amount=amount,
            ledger=self.ledger,
            code=TransferCode.FUNDING,
            payment=PaymentDetails(
                network=self.asset.network,
                token_address=self.asset.address,
                payer_address=checksum(from_address),
                payee_address=checksum(to_address),
                tx_hash=tx_hash,
                block_number=block_number,
                purpose="deposit",
            ),
        )
        return self._book_deposit(transfer)

    def _book_deposit(self, transfer: NewTransfer) -> CreateTransferResult:
        with self.database.write() as session:
            (result,) = create_transfers(session=session, transfers=[transfer])
        return result

    def sync_deposits(self, chain: Chain, address: str, *, from_block: int | None = None) -> int:
        """Book every token transfer into ``address`` not booked yet; return how many were new.

        A cursor remembers where the last scan ended. Without one, the scan
        starts at ``from_block`` (default 0: fine for dev chains; on a real
        network pass the block the wallet was created in).
        """
        self.ensure()
        key = (
            agent_cursor.c.agent_id == self.agent_id,
            agent_cursor.c.network == self.asset.network,
            agent_cursor.c.token == self.asset.address.lower(),
        )
        with self.database.read() as session:
            row = session.execute(select(agent_cursor.c.next_block).where(*key)).first()
        start = int(row.next_block) if row is not None else (from_block or 0)
        head = chain.block_number()
        if head < start:
            return 0
        booked = 0
        for event in chain.transfer_events(self.asset.address, start, head, [address]):
            if event.to.lower() != address.lower():
                continue
            if event.from_address.lower() == CANONICAL_CHANNEL_CONTRACTS.settlement.lower():
                # Money back from a channel's escrow is not new funding: it is
                # booked as a CHANNEL_REFUND (farthing.agents.channels.books).
                continue
            transfer = NewTransfer(
                id=self.funding_transfer_id(event.tx_hash, event.log_index),
                debit_account_id=self.funding_account_id,
                credit_account_id=self.budget_account_id,
                amount=event.value,
                ledger=self.ledger,
                code=TransferCode.FUNDING,
                payment=PaymentDetails(
                    network=self.asset.network,
                    token_address=self.asset.address,
                    payer_address=checksum(event.from_address),
                    payee_address=checksum(address),
                    tx_hash=event.tx_hash,
                    block_number=event.block_number,
                    purpose="deposit",
                ),
            )
            if self._book_deposit(transfer) is CreateTransferResult.OK:
                booked += 1
        with self.database.write() as session:
            values = {"next_block": head + 1}
            if row is None:
                session.execute(
                    insert(agent_cursor),
                    [
                        {
                            "agent_id": self.agent_id,
                            "network": self.asset.network,
                            "token": self.asset.address.lower(),
                            **values,
                        }
                    ],
                )
            else:
                session.execute(update(agent_cursor).where(*key).values(values))
        return booked

    # ------------------------------------------------------------ status

    def status(self, task_id: str | None = None) -> BudgetStatus:
        """Funding, spend and what is left, for the agent and (if given) one task."""
        from farthing.agents.reservations import task_spend

        self.ensure()
        with self.database.read() as session:
            rows = [
                r
                for r in budget_report(session=session, now_ns=time.time_ns())
                if r.account_id == self.budget_account_id
            ]
            policy = self.read_policy(session)
            task_budget = self.task_budget(session, task_id) if task_id else None
            spent_on_task = task_spend(session, self.budget_account_id, task_id) if task_id else 0
        invariant(len(rows) == 1, f"agent {self.agent_id} has no budget row after ensure()")
        row = rows[0]
        return BudgetStatus(
            funded=row.funded,
            spent=row.spent,
            reserved=row.reserved,
            available=row.remaining,
            daily_limit=policy.daily_limit,
            daily_used=row.daily_used,
            total_budget=policy.total_budget,
            task_id=task_id,
            task_budget=task_budget,
            task_spent=spent_on_task,
        )


def _policy_values(agent_id: str, policy: SpendPolicy) -> dict[str, object]:
    return {
        "agent_id": agent_id,
        "total_budget": policy.total_budget,
        "approval_above": policy.approval_above,
        "approval_timeout_s": policy.approval_timeout_s,
        "hosts_allowed": SpendPolicy.dump_list(policy.hosts_allowed),
        "hosts_denied": SpendPolicy.dump_list(policy.hosts_denied),
        "payees_allowed": SpendPolicy.dump_list(policy.payees_allowed),
        "payees_denied": SpendPolicy.dump_list(policy.payees_denied),
        "updated_ns": time.time_ns(),
    }
