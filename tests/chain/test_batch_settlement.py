"""Our batch-settlement contracts keep the spec's promises on both real chains (memory and anvil).

Each test deploys a fresh stablecoin on a real chain, places our escrow and
ERC-3009 collector at the canonical addresses, and drives them with real
signatures: the payer signs an EIP-3009 ReceiveWithAuthorization for the
deposit and EIP-712 vouchers; the receiver authorizer signs claim batches and
refunds. Ids and digests are built three ways (our code, the x402 reference
package's helpers, and the contract's own getters) and must agree. Each
refusal is checked by the contract's custom error, with balances unchanged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from x402.mechanisms.evm.batch_settlement import constants as ref
from x402.mechanisms.evm.batch_settlement.encoding import (
    build_erc3009_collector_data,
    build_erc3009_deposit_nonce,
)
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig as RefChannelConfig
from x402.mechanisms.evm.batch_settlement.utils import (
    compute_channel_id,
    get_batch_settlement_eip712_domain,
)

from farthing.contracts import load_artifact
from farthing.devchain.node import ensure_deployment
from farthing.paywall.schemes.batch_settlement.contract import (
    ESCROW_EVENT_TOPICS,
    ChannelEscrow,
    VoucherClaim,
)
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    ClaimEntry,
    deposit_nonce,
    erc3009_collector_data,
    place_channel_contracts,
    sign_claim_batch,
    sign_refund,
    sign_voucher,
)
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.wallet.chain import Call, Chain, LogEntry, RpcChain, TxResult
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin

CONTRACTS = CANONICAL_CHANNEL_CONTRACTS
DELAY_S = 900
FUNDS = 1_000_000  # 1 USDC in atomic units


@dataclass
class Setup:
    """One channel's parties on a fresh token; the dev accounts pay for gas."""

    chain: Chain
    token: Stablecoin
    escrow: ChannelEscrow
    domain: ChannelDomain
    payer: LocalSigner  # a dev account: it sends initiate/finalizeWithdraw itself
    voucher_key: LocalSigner  # the payerAuthorizer
    authorizer: LocalSigner  # the receiverAuthorizer; also sends claims
    relayer: LocalSigner  # submits deposits and signed claims/refunds
    receiver: str  # never sends anything
    config: ChannelConfig

    @property
    def channel_id(self) -> bytes:
        return self.domain.channel_id(self.config)

    def deposit(
        self,
        amount: int,
        *,
        salt: int | None = None,
        channel: ChannelConfig | None = None,
        signed_for: bytes | None = None,
    ) -> TxResult:
        """Sign a ReceiveWithAuthorization to the collector and relay ``deposit``."""
        config = channel or self.config
        salt = secrets.randbits(256) if salt is None else salt
        cid = self.domain.channel_id(config) if signed_for is None else signed_for
        now = self.chain.timestamp()
        auth = build_authorization(
            from_address=self.payer.address,
            to=CONTRACTS.erc3009_collector,
            value=amount,
            now=now,
            valid_for_s=3600,
            nonce=deposit_nonce(cid, salt),
        )
        signed = sign_receive_authorization(
            self.payer, auth, TokenDomain.for_asset(self.token.asset)
        )
        data = erc3009_collector_data(auth.valid_after, auth.valid_before, salt, signed.signature)
        return self.escrow.deposit(
            config, amount, CONTRACTS.erc3009_collector, data, sender=self.relayer
        )

    def claim_row(
        self, ceiling: int, total: int, *, key: LocalSigner | None = None
    ) -> VoucherClaim:
        voucher = sign_voucher(key or self.voucher_key, self.domain, self.channel_id, ceiling)
        return VoucherClaim(self.config, ceiling, voucher.signature, total)


def _setup(chain: Chain) -> Setup:
    dev = chain.dev_accounts()
    owner, payer, authorizer, relayer = (a.signer() for a in dev[:4])
    place_channel_contracts(chain)
    asset = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    assert token.mint(payer.address, FUNDS, sender=owner).ok
    voucher_key = LocalSigner.generate()
    receiver = LocalSigner.generate().address
    config = ChannelConfig(
        payer=payer.address,
        payer_authorizer=voucher_key.address,
        receiver=receiver,
        receiver_authorizer=authorizer.address,
        token=asset.address,
        withdraw_delay_s=DELAY_S,
        salt=secrets.token_bytes(32),
    )
    escrow = ChannelEscrow(chain, CONTRACTS.settlement)
    return Setup(
        chain,
        token,
        escrow,
        ChannelDomain(chain.chain_id),
        payer,
        voucher_key,
        authorizer,
        relayer,
        receiver,
        config,
    )


@pytest.fixture
def setup(chain: Chain) -> Setup:
    return _setup(chain)


def _events(result: TxResult, name: str) -> list[LogEntry]:
    return [log for log in result.logs if log.topics[0] == ESCROW_EVENT_TOPICS[name]]


def _ref_config(config: ChannelConfig) -> RefChannelConfig:
    wire = config.to_wire()
    return RefChannelConfig(
        payer=wire["payer"],
        payer_authorizer=wire["payerAuthorizer"],
        receiver=wire["receiver"],
        receiver_authorizer=wire["receiverAuthorizer"],
        token=wire["token"],
        withdraw_delay=wire["withdrawDelay"],
        salt=wire["salt"],
    )


def _eip712(
    types: dict[str, list[dict[str, str]]], primary: str, message: dict[str, object], chain_id: int
) -> bytes:
    """The reference digest: eth-account over the x402 package's domain and types."""
    signable = encode_typed_data(
        domain_data=get_batch_settlement_eip712_domain(chain_id),
        message_types=dict(types),
        message_data=message,
    )
    return keccak(b"\x19\x01" + signable.header + signable.body)


# ---------------------------------------------------------------- placement and digests


def test_contracts_sit_at_the_canonical_addresses(setup: Setup) -> None:
    chain = setup.chain
    assert CONTRACTS.settlement == ref.BATCH_SETTLEMENT_ADDRESS
    assert CONTRACTS.erc3009_collector == ref.ERC3009_DEPOSIT_COLLECTOR_ADDRESS
    assert CONTRACTS.permit2_collector == ref.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS
    runtime = bytes.fromhex(load_artifact("BatchSettlement").deployed_bytecode[2:])
    assert chain.code_at(CONTRACTS.settlement) == runtime
    bound = chain.call(Call(CONTRACTS.erc3009_collector, keccak(text="x402BatchSettlement()")[:4]))
    assert bound.ok and bound.return_data[-20:] == bytes.fromhex(CONTRACTS.settlement[2:])
    assert chain.code_at(MULTICALL3_ADDRESS)
    before = chain.block_number()
    place_channel_contracts(chain)  # idempotent: nothing to write, nothing mined
    assert chain.block_number() == before


def test_ids_and_digests_agree_with_the_reference_and_the_contract(setup: Setup) -> None:
    chain_id, cid = setup.chain.chain_id, setup.channel_id
    assert cid == setup.escrow.channel_id(setup.config)
    assert "0x" + cid.hex() == compute_channel_id(_ref_config(setup.config), chain_id)
    # Bound to the chain: the same config has another id elsewhere.
    assert ChannelDomain(chain_id + 1).channel_id(setup.config) != cid

    voucher = setup.domain.voucher_digest(cid, 12_345)
    assert voucher == setup.escrow.voucher_digest(cid, 12_345)
    assert voucher == _eip712(
        ref.VOUCHER_TYPES, "Voucher", {"channelId": cid, "maxClaimableAmount": 12_345}, chain_id
    )

    refund = setup.domain.refund_digest(cid, 3, 500)
    assert refund == setup.escrow.refund_digest(cid, 3, 500)
    assert refund == _eip712(
        ref.REFUND_TYPES, "Refund", {"channelId": cid, "nonce": 3, "amount": 500}, chain_id
    )

    rows = [setup.claim_row(700, 600), setup.claim_row(900, 900)]
    batch = setup.domain.claim_batch_digest([ClaimEntry(cid, 700, 600), ClaimEntry(cid, 900, 900)])
    assert batch == setup.escrow.claim_batch_digest(rows)
    entries = [
        {"channelId": cid, "maxClaimableAmount": 700, "totalClaimed": 600},
        {"channelId": cid, "maxClaimableAmount": 900, "totalClaimed": 900},
    ]
    assert batch == _eip712(ref.CLAIM_BATCH_TYPES, "ClaimBatch", {"claims": entries}, chain_id)

    # The deposit nonce and collector data, as the reference facilitator builds them.
    salt = secrets.randbits(256)
    assert "0x" + deposit_nonce(cid, salt).hex() == build_erc3009_deposit_nonce(
        "0x" + cid.hex(), hex(salt)
    )
    signature = b"\x01" * 65
    assert erc3009_collector_data(5, 6, salt, signature) == build_erc3009_collector_data(
        "5", "6", str(salt), "0x" + signature.hex()
    )


# ---------------------------------------------------------------- the happy path


def test_deposit_vouchers_claim_and_settle_move_exactly_what_was_signed(setup: Setup) -> None:
    s = setup
    deposited = s.deposit(400_000)
    assert deposited.ok, deposited.reason
    assert len(_events(deposited, "ChannelCreated")) == 1
    assert s.escrow.channel(s.channel_id) == (400_000, 0)
    assert s.token.balance_of(s.payer.address) == FUNDS - 400_000
    assert s.token.balance_of(CONTRACTS.settlement) == 400_000
    assert s.token.balance_of(CONTRACTS.erc3009_collector) == 0

    # Three requests: cumulative ceilings 100, 250, 400; the server charged 380 in all.
    for ceiling in (100, 250):
        s.claim_row(ceiling, ceiling)
    claimed = s.escrow.claim([s.claim_row(400, 380)], sender=s.authorizer)
    assert claimed.ok, claimed.reason
    assert s.escrow.channel(s.channel_id) == (400_000, 380)
    assert s.escrow.receiver(s.receiver, s.token.address) == (380, 0)
    assert s.token.balance_of(s.receiver) == 0  # claiming only books; settle moves money

    settled = s.escrow.settle(s.receiver, s.token.address, sender=s.relayer)
    assert settled.ok and len(_events(settled, "Settled")) == 1
    assert s.token.balance_of(s.receiver) == 380
    assert s.escrow.receiver(s.receiver, s.token.address) == (380, 380)
    again = s.escrow.settle(s.receiver, s.token.address, sender=s.relayer)
    assert again.ok and not _events(again, "Settled")  # nothing left: a no-op
    assert (
        s.token.balance_of(s.receiver)
        + s.token.balance_of(CONTRACTS.settlement)
        + s.token.balance_of(s.payer.address)
        == FUNDS
    )

    # A top-up lands on the same channel without re-creating it.
    topped = s.deposit(100_000)
    assert topped.ok and not _events(topped, "ChannelCreated")
    assert s.escrow.channel(s.channel_id) == (500_000, 380)


def test_claim_with_signature_and_settle_in_one_multicall(setup: Setup) -> None:
    s = setup
    assert s.deposit(10_000).ok
    rows = [s.claim_row(2_000, 1_500)]
    entries = [ClaimEntry(s.channel_id, 2_000, 1_500)]
    signature = sign_claim_batch(s.authorizer, s.domain, entries)
    calls = [
        ChannelEscrow.encode_claim_with_signature(rows, signature),
        ChannelEscrow.encode_settle(s.receiver, s.token.address),
    ]
    # Anyone may relay a signed claim: here the relayer, who is no party to the channel.
    result = s.escrow.multicall(calls, sender=s.relayer)
    assert result.ok, result.reason
    assert len(_events(result, "Claimed")) == 1 and len(_events(result, "Settled")) == 1
    assert s.token.balance_of(s.receiver) == 1_500
    assert s.escrow.channel(s.channel_id) == (10_000, 1_500)


def test_refund_and_refund_with_signature_return_only_unclaimed_escrow(setup: Setup) -> None:
    s = setup
    assert s.deposit(10_000).ok
    assert s.escrow.claim([s.claim_row(3_000, 3_000)], sender=s.authorizer).ok

    direct = s.escrow.refund(s.config, 2_000, sender=s.authorizer)
    assert direct.ok and len(_events(direct, "Refunded")) == 1
    assert s.escrow.refund_nonce(s.channel_id) == 1
    assert s.token.balance_of(s.payer.address) == FUNDS - 10_000 + 2_000

    # Relayed with the authorizer's signature at the current nonce; asking for
    # more than is unclaimed returns exactly the unclaimed rest.
    signature = sign_refund(s.authorizer, s.domain, s.channel_id, 1, 50_000)
    signed = s.escrow.refund_with_signature(s.config, 50_000, 1, signature, sender=s.relayer)
    assert signed.ok, signed.reason
    assert s.escrow.channel(s.channel_id) == (3_000, 3_000)
    assert s.token.balance_of(s.payer.address) == FUNDS - 3_000
    # A replayed signature is refused: the nonce moved on.
    replay = s.escrow.refund_with_signature(s.config, 50_000, 1, signature, sender=s.relayer)
    assert (replay.ok, replay.reason) == (False, "invalid_refund_nonce")
    # Only the receiver side may refund directly.
    stranger = s.escrow.refund(s.config, 1, sender=s.relayer)
    assert (stranger.ok, stranger.reason) == (False, "not_authorized_to_refund")


def test_a_full_refund_closes_the_channel(setup: Setup) -> None:
    s = setup
    assert s.deposit(5_000).ok
    closed = s.escrow.refund(s.config, 5_000, sender=s.authorizer)
    assert closed.ok and len(_events(closed, "ChannelClosed")) == 1
    assert s.escrow.channel(s.channel_id) == (0, 0)
    assert s.token.balance_of(s.payer.address) == FUNDS


# ---------------------------------------------------------------- refusals


def test_claims_refused_or_ignored_as_the_spec_says(setup: Setup) -> None:
    s = setup
    assert s.deposit(10_000).ok
    row = s.claim_row(5_000, 4_000)
    assert s.escrow.claim([row], sender=s.authorizer).ok

    # A cumulative amount that goes backwards changes nothing: totals never decrease.
    backwards = s.escrow.claim([s.claim_row(3_000, 3_000)], sender=s.authorizer)
    assert backwards.ok and not _events(backwards, "Claimed")
    # The same voucher replayed is a no-op, never a second charge.
    replay = s.escrow.claim([row], sender=s.authorizer)
    assert replay.ok and not _events(replay, "Claimed")
    assert s.escrow.channel(s.channel_id) == (10_000, 4_000)

    refusals = [
        (s.claim_row(20_000, 20_000), "claim_exceeds_balance"),
        (s.claim_row(5_000, 6_000), "claim_exceeds_ceiling"),
        (s.claim_row(6_000, 6_000, key=LocalSigner.generate()), "invalid_signature"),
        (
            s.claim_row(6_000, 6_000, key=s.payer),
            "invalid_signature",
        ),  # payer is not the voucher key
    ]
    for claim, reason in refusals:
        refused = s.escrow.claim([claim], sender=s.authorizer)
        assert (refused.ok, refused.reason, refused.sent) == (False, reason, False)
    not_receiver = s.escrow.claim([s.claim_row(6_000, 6_000)], sender=s.relayer)
    assert not_receiver.reason == "not_authorized_to_claim"
    assert s.escrow.claim([], sender=s.authorizer).reason == "empty_batch"

    # claimWithSignature signed by a key that is not the receiverAuthorizer.
    rows = [s.claim_row(6_000, 6_000)]
    forged = sign_claim_batch(
        LocalSigner.generate(), s.domain, [ClaimEntry(s.channel_id, 6_000, 6_000)]
    )
    wrong = s.escrow.claim_with_signature(rows, forged, sender=s.relayer)
    assert (wrong.ok, wrong.reason) == (False, "invalid_signature")
    # A valid batch signature does not cover other rows.
    good = sign_claim_batch(s.authorizer, s.domain, [ClaimEntry(s.channel_id, 6_000, 5_000)])
    tampered = s.escrow.claim_with_signature(rows, good, sender=s.relayer)
    assert tampered.reason == "invalid_signature"
    assert s.escrow.channel(s.channel_id) == (10_000, 4_000)
    assert s.token.balance_of(CONTRACTS.settlement) == 10_000


def test_deposits_refused_without_losing_the_payers_money(setup: Setup) -> None:
    s = setup
    # An authorization signed for one channel cannot fund another: the nonce binds the id.
    other = ChannelConfig(**{**_fields(s.config), "salt": secrets.token_bytes(32)})
    crossed = s.deposit(1_000, channel=other, signed_for=s.channel_id)
    assert (crossed.ok, crossed.reason) == (False, "invalid_signature")
    # A replayed authorization is spent.
    salt = secrets.randbits(256)
    assert s.deposit(1_000, salt=salt).ok
    again = s.deposit(1_000, salt=salt)
    assert (again.ok, again.reason) == (False, "authorization_used_or_canceled")
    short = s.deposit(FUNDS)
    assert (short.ok, short.reason) == (False, "insufficient_balance")
    bad_delay = ChannelConfig(**{**_fields(s.config), "withdraw_delay_s": 60})
    assert s.deposit(1_000, channel=bad_delay).reason == "withdraw_delay_out_of_range"
    assert s.deposit(0).reason == "zero_deposit"
    # Only the escrow may make the collector pull.
    direct = s.chain.send(
        Call(
            CONTRACTS.erc3009_collector,
            keccak(text="collect(address,address,uint256,bytes32,bytes)")[:4] + bytes(32 * 6),
        ),
        sender=s.relayer,
    )
    assert not direct.ok
    assert s.escrow.channel(s.channel_id) == (1_000, 0)
    assert s.token.balance_of(s.payer.address) == FUNDS - 1_000


def _fields(config: ChannelConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


# ---------------------------------------------------------------- timed withdrawal


def test_timed_withdrawal_waits_for_the_delay_and_leaves_claims_alone(own_chain: Chain) -> None:
    s = _setup(own_chain)
    assert s.deposit(10_000).ok
    # Only the payer side may start it, and not for more than is unclaimed.
    assert (
        s.escrow.initiate_withdraw(s.config, 10_000, sender=s.relayer).reason == "invalid_channel"
    )
    assert s.escrow.initiate_withdraw(s.config, 10_001, sender=s.payer).reason == (
        "withdraw_amount_exceeds_available"
    )
    started = s.escrow.initiate_withdraw(s.config, 10_000, sender=s.payer)
    assert started.ok and len(_events(started, "WithdrawInitiated")) == 1
    snapshot = s.escrow.snapshot(s.channel_id)
    assert snapshot.withdraw_requested_at > 0 and snapshot.withdraw_amount == 10_000
    assert (
        s.escrow.initiate_withdraw(s.config, 1, sender=s.payer).reason
        == "withdrawal_already_pending"
    )

    early = s.escrow.finalize_withdraw(s.config, sender=s.payer)
    assert (early.ok, early.reason) == (False, "withdraw_delay_not_elapsed")
    # The delay is the receiver's window: it claims what it earned.
    assert s.escrow.claim([s.claim_row(2_500, 2_500)], sender=s.authorizer).ok

    own_chain.advance_time(DELAY_S)
    assert s.escrow.finalize_withdraw(s.config, sender=s.relayer).reason == (
        "not_authorized_to_finalize_withdraw"
    )
    done = s.escrow.finalize_withdraw(s.config, sender=s.payer)
    assert done.ok and len(_events(done, "WithdrawFinalized")) == 1
    # Capped to the unclaimed rest: the claimed 2,500 stays for the receiver.
    assert s.escrow.channel(s.channel_id) == (2_500, 2_500)
    assert s.token.balance_of(s.payer.address) == FUNDS - 2_500
    assert s.escrow.settle(s.receiver, s.token.address, sender=s.relayer).ok
    assert s.token.balance_of(s.receiver) == 2_500
    assert s.escrow.finalize_withdraw(s.config, sender=s.payer).reason == "withdrawal_not_pending"


@pytest.mark.anvil
def test_chain_dev_deployment_places_the_contracts_and_records_them(
    anvil_chain: Chain, tmp_path: Path
) -> None:
    assert isinstance(anvil_chain, RpcChain)
    deployment, _ = ensure_deployment(anvil_chain, tmp_path, fund_atomic=0)
    assert deployment.channels == CONTRACTS
    assert load_dev_deployment(tmp_path, state_dir=tmp_path).channels == CONTRACTS
    runtime = bytes.fromhex(load_artifact("BatchSettlement").deployed_bytecode[2:])
    assert anvil_chain.code_at(CONTRACTS.settlement) == runtime
    assert anvil_chain.code_at(CONTRACTS.erc3009_collector)
