"""Reconciliation against a real chain finds every kind of break, and resolves pending payments from the chain.

Each test deploys a fresh token on the memory chain and on anvil, keeps real
books in SQLite, plants one kind of break (a settlement the chain never saw, a
transfer the books never posted, a wrong amount, a pending payment past its
window) and checks that `reconcile` reports exactly it; a clean run reports 0.
The CLI test runs `farthing ledger reconcile` as a real process against anvil.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from farthing.ledger import (
    AccountCode,
    AccountFlags,
    BudgetPolicy,
    CreateTransferResult,
    LedgerDatabase,
    LedgerSettings,
    NewAccount,
    NewTransfer,
    PaymentDetails,
    TransferCode,
    create_accounts,
    create_transfers,
    lookup_transfers,
    new_id,
    register_asset,
    reserve_payment,
    set_budget,
    settle_payment,
    upgrade_database,
)
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import ReconciliationReport, reconcile
from farthing.wallet.address import ZERO_ADDRESS
from farthing.wallet.chain import Chain, RpcChain
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_authorization
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import cli_env, run_farthing

LEDGER = 1
FUNDING, BUDGET, PAYEE = 1, 2, 3


@dataclass
class World:
    """A token on a chain, an agent's books in SQLite, and the people involved."""

    chain: Chain
    asset: Asset
    token: Stablecoin
    db: LedgerDatabase
    database_url: str
    owner: LocalSigner
    payer: LocalSigner
    payee: LocalSigner
    start_block: int  # the token's deployment: nothing of ours happened before it

    @property
    def view(self) -> TokenChainView:
        return TokenChainView(self.chain, self.asset)

    def reconcile(self, **kwargs: object) -> ReconciliationReport:
        """Reconcile from the token's deployment on, as an operator would."""
        return reconcile(self.db, self.view, from_block=self.start_block, **kwargs)  # type: ignore[arg-type]

    def details(self, **facts: object) -> PaymentDetails:
        return PaymentDetails(
            network=self.asset.network,
            token_address=self.asset.address,
            payer_address=self.payer.address,
            payee_address=self.payee.address,
            **facts,  # type: ignore[arg-type]
        )

    def book_funding(self, amount: int, tx_hash: str, block: int) -> None:
        funding = NewTransfer(
            id=new_id(),
            debit_account_id=FUNDING,
            credit_account_id=BUDGET,
            amount=amount,
            ledger=LEDGER,
            code=TransferCode.FUNDING,
            payment=PaymentDetails(
                network=self.asset.network,
                token_address=self.asset.address,
                payer_address=ZERO_ADDRESS,  # a mint comes from the zero address
                payee_address=self.payer.address,
                tx_hash=tx_hash,
                block_number=block,
            ),
        )
        with self.db.write() as session:
            assert create_transfers(session=session, transfers=[funding]) == [
                CreateTransferResult.OK
            ]

    def pay(self, amount: int, *, chain_amount: int | None = None, submit: bool = True) -> int:
        """Reserve, sign, (maybe) submit and settle one payment; return its id."""
        now = self.chain.timestamp()
        authorization = build_authorization(
            from_address=self.payer.address,
            to=self.payee.address,
            value=amount if chain_amount is None else chain_amount,
            now=now,
        )
        signed = sign_authorization(self.payer, authorization, TokenDomain.for_asset(self.asset))
        payment_id = new_id()
        facts = self.details(
            authorization_nonce="0x" + authorization.nonce.hex(),
            valid_before=authorization.valid_before,
        )
        with self.db.write() as session:
            reserved = reserve_payment(
                session=session,
                payment_id=payment_id,
                budget_account_id=BUDGET,
                payee_account_id=PAYEE,
                amount=amount,
                ledger=LEDGER,
                payment=facts,
            )
        assert reserved is CreateTransferResult.OK
        if not submit:
            return payment_id
        result = self.token.transfer_with_authorization(signed, sender=self.owner)
        assert result.ok and result.tx_hash is not None
        with self.db.write() as session:
            settled = settle_payment(
                session=session,
                payment_id=payment_id,
                payment=PaymentDetails(tx_hash=result.tx_hash, block_number=result.block_number),
            )
        assert settled is CreateTransferResult.OK
        return payment_id


def make_world(chain: Chain, tmp_path: Path) -> World:
    owner, payer, payee = (a.signer() for a in chain.dev_accounts()[6:9])
    start_block = chain.block_number() + 1
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    url = f"sqlite:///{tmp_path / 'books.sqlite'}"
    db = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(db)
    dmnec = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    with db.write() as session:
        register_asset(
            session=session,
            asset_id=f"{asset.network}/erc20:{asset.address}",
            ledger=LEDGER,
            decimals=6,
            symbol="USDC",
        )
        create_accounts(
            session=session,
            accounts=[
                NewAccount(id=FUNDING, ledger=LEDGER, code=AccountCode.FUNDING),
                NewAccount(id=BUDGET, ledger=LEDGER, code=AccountCode.BUDGET, flags=dmnec),
                NewAccount(id=PAYEE, ledger=LEDGER, code=AccountCode.PAYEE),
            ],
        )
        set_budget(session=session, policy=BudgetPolicy(account_id=BUDGET, agent_id="agent"))
    w = World(chain, asset, token, db, url, owner, payer, payee, start_block)
    minted = token.mint(payer.address, 10_000_000, sender=owner)
    assert minted.ok and minted.tx_hash and minted.block_number
    w.book_funding(10_000_000, minted.tx_hash, minted.block_number)
    return w


@pytest.fixture
def world(chain: Chain, tmp_path: Path) -> World:
    """A fresh world on each backend."""
    return make_world(chain, tmp_path)


def test_clean_books_have_no_breaks(world: World) -> None:
    world.pay(100_000)
    world.pay(250_000)
    report = world.reconcile()
    assert report.payments_checked == 3  # the funding and two payments
    assert report.breaks == ()
    assert report.counts() == {
        "missing_on_chain": 0,
        "missing_in_ledger": 0,
        "amount_mismatch": 0,
        "pending_past_timeout": 0,
    }


def test_missing_on_chain(world: World) -> None:
    world.pay(100_000)
    ghost = world.pay(50_000, submit=False)
    with world.db.write() as session:  # the books claim a settlement that never happened
        settle_payment(
            session=session,
            payment_id=ghost,
            payment=PaymentDetails(
                tx_hash="0x" + secrets.token_hex(32), block_number=world.chain.block_number()
            ),
        )
    report = world.reconcile()
    assert [b.kind.value for b in report.breaks] == ["missing_on_chain"]
    assert report.breaks[0].transfer_id == ghost


def test_missing_in_ledger(world: World) -> None:
    world.pay(100_000)
    sent = world.token.transfer(world.payee.address, 70_000, sender=world.payer)
    assert sent.ok
    report = world.reconcile()
    assert [b.kind.value for b in report.breaks] == ["missing_in_ledger"]
    assert report.breaks[0].tx_hash == sent.tx_hash
    assert report.breaks[0].chain_amount == 70_000


def test_amount_mismatch(world: World) -> None:
    paid = world.pay(300_000, chain_amount=200_000)
    report = world.reconcile()
    assert [b.kind.value for b in report.breaks] == ["amount_mismatch"]
    mismatch = report.breaks[0]
    assert (mismatch.transfer_id, mismatch.ledger_amount, mismatch.chain_amount) == (
        paid,
        300_000,
        200_000,
    )


def test_pending_past_timeout_is_resolved_from_the_chain(world: World) -> None:
    # Both signatures went out and the outcome was never recorded. One of them
    # was in fact settled on chain; the other never was.
    now = world.chain.timestamp()
    landed = world.pay(120_000, submit=False)
    lost = world.pay(80_000, submit=False)
    with world.db.read() as session:
        landed_row, lost_row = lookup_transfers(session=session, ids=[landed, lost])
    authorization = build_authorization(
        from_address=world.payer.address,
        to=world.payee.address,
        value=120_000,
        now=now,
        nonce=bytes.fromhex(landed_row.authorization_nonce[2:]),
    )
    signed = sign_authorization(world.payer, authorization, TokenDomain.for_asset(world.asset))
    assert world.token.transfer_with_authorization(signed, sender=world.owner).ok

    later = max(landed_row.valid_before, lost_row.valid_before) + 1
    seen = world.reconcile(now_s=later)
    kinds = sorted(b.kind.value for b in seen.breaks)
    assert kinds == ["missing_in_ledger", "pending_past_timeout", "pending_past_timeout"]
    decided = {b.transfer_id: b.resolution for b in seen.breaks if b.transfer_id}
    assert decided == {landed: "post", lost: "void"}
    assert seen.resolutions == ()  # reporting alone changes nothing

    fixed = world.reconcile(now_s=later, resolve=True)
    actions = {r.transfer_id: (r.action, r.result) for r in fixed.resolutions}
    assert actions == {landed: ("post", "ok"), lost: ("void", "ok")}
    assert world.reconcile(now_s=later).breaks == ()


@pytest.mark.anvil
def test_cli_reports_and_exits_nonzero_on_breaks(anvil_chain: RpcChain, tmp_path: Path) -> None:
    world = make_world(anvil_chain, tmp_path)
    assert anvil_chain.rpc_url is not None
    world.pay(100_000)
    args = [
        "ledger",
        "reconcile",
        "--rpc-url",
        anvil_chain.rpc_url,
        "--token",
        world.asset.address,
        "--database-url",
        world.database_url,
        "--from-block",
        str(world.start_block),
        "--json",
    ]
    env = cli_env(tmp_path)
    clean = run_farthing(args, env=env)
    assert clean.code == 0, clean.stderr
    assert clean.json()["breaks"] == 0

    assert world.token.transfer(world.payee.address, 1, sender=world.payer).ok
    broken = run_farthing(args, env=env)
    assert broken.code == 1
    assert broken.json()["by_kind"]["missing_in_ledger"] == 1

    human = run_farthing(args[:-1], env=env)
    assert human.code == 1
    assert "missing_in_ledger" in human.stdout
    assert human.stderr.strip() == "error: 1 break(s) between the books and the chain"
