"""Our batch-settlement wire types read what the x402 reference package writes, and it reads ours.

Payloads are built and signed by the reference client (``x402 2.25``'s
``create_batch_settlement_eip3009_deposit_payload`` and ``sign_voucher`` with
an eth-account key), turned into JSON with its own ``to_dict``, parsed by
``farthing.paywall.schemes.batch_settlement.wire`` and checked field by field, including that
the voucher recovers to the signer through our digest. The reverse direction
feeds our ``to_wire()`` to the reference ``from_dict`` and compares. Malformed
input of every kind comes back as a ``WireRefusal`` with the spec's code.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from eth_account import Account
from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement import types as ref
from x402.mechanisms.evm.batch_settlement.client.eip3009 import (
    create_batch_settlement_eip3009_deposit_payload,
)
from x402.mechanisms.evm.batch_settlement.client.voucher import sign_voucher as ref_sign_voucher
from x402.mechanisms.evm.batch_settlement.encoding import build_erc3009_deposit_nonce
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequirements

from farthing.paywall.schemes.batch_settlement import extras, redeem, wire
from farthing.paywall.schemes.batch_settlement.contract import VoucherClaim
from farthing.paywall.schemes.batch_settlement.extras import (
    BatchExtra,
    ChannelStateWire,
    PaymentResponseExtra,
    VoucherStateWire,
)
from farthing.paywall.schemes.batch_settlement.redeem import ClaimPayload, SettlePayload
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    SignedVoucher,
    deposit_nonce,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    DepositPayload,
    RefundPayload,
    VoucherPayload,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.signer import LocalSigner

CHAIN_ID = 31337
NETWORK = f"eip155:{CHAIN_ID}"
TOKEN = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


@pytest.fixture
def keys() -> tuple[LocalSigner, LocalSigner]:
    return LocalSigner.generate(), LocalSigner.generate()


def _config(payer: str, authorizer: str) -> ChannelConfig:
    return ChannelConfig(
        payer=payer,
        payer_authorizer=authorizer,
        receiver=LocalSigner.generate().address,
        receiver_authorizer=LocalSigner.generate().address,
        token=TOKEN,
        withdraw_delay_s=900,
        salt=secrets.token_bytes(32),
    )


def _ref_config(config: ChannelConfig) -> ref.ChannelConfig:
    return ref.ChannelConfig.from_dict(config.to_wire())


def _ref_signer(signer: LocalSigner) -> EthAccountSigner:
    return EthAccountSigner(Account.from_key(signer.private_key.get_secret_value()))


def _requirements(config: ChannelConfig) -> PaymentRequirements:
    return PaymentRequirements(
        scheme=wire.SCHEME,
        network=NETWORK,
        asset=config.token,
        amount="1000",
        pay_to=config.receiver,
        max_timeout_seconds=3600,
        extra={
            "receiverAuthorizer": config.receiver_authorizer,
            "withdrawDelay": config.withdraw_delay_s,
            "name": "USDC",
            "version": "2",
        },
    )


def _through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))  # exactly what crosses the wire


def test_a_reference_deposit_parses_and_its_signatures_are_the_payers(
    keys: tuple[LocalSigner, LocalSigner],
) -> None:
    payer, voucher_key = keys
    config = _config(payer.address, voucher_key.address)
    payload = create_batch_settlement_eip3009_deposit_payload(
        _ref_signer(payer),
        _requirements(config),
        _ref_config(config),
        deposit_amount=100_000,
        max_claimable_amount=1000,
        voucher_signer=_ref_signer(voucher_key),
    )
    parsed = wire.parse_client_payload(_through_json(payload.to_dict()))
    assert isinstance(parsed, DepositPayload)
    domain = ChannelDomain(CHAIN_ID)
    assert parsed.config == config
    assert parsed.voucher.channel_id == domain.channel_id(config)
    assert parsed.voucher.max_claimable_amount == 1000
    assert parsed.amount == 100_000
    digest = domain.voucher_digest(parsed.voucher.channel_id, 1000)
    assert recover_digest(digest, parsed.voucher.signature) == voucher_key.address
    ref_auth = payload.deposit.authorization.erc3009_authorization  # type: ignore[union-attr]
    assert ref_auth is not None
    # Our nonce from the parsed salt is the reference's nonce: the deposit binds the same way.
    assert "0x" + deposit_nonce(parsed.voucher.channel_id, parsed.authorization.salt).hex() == (
        build_erc3009_deposit_nonce("0x" + parsed.voucher.channel_id.hex(), ref_auth.salt)
    )
    assert parsed.authorization.valid_before == int(ref_auth.valid_before)
    # And back: our JSON is the reference's JSON.
    assert parsed.to_wire() == ref.DepositPayload.from_dict(parsed.to_wire()).to_dict()
    assert parsed.to_wire() == payload.to_dict()


def test_reference_voucher_and_refund_payloads_round_trip(
    keys: tuple[LocalSigner, LocalSigner],
) -> None:
    payer, voucher_key = keys
    config = _config(payer.address, voucher_key.address)
    cid = "0x" + ChannelDomain(CHAIN_ID).channel_id(config).hex()
    fields = ref_sign_voucher(_ref_signer(voucher_key), cid, 5000, NETWORK)
    voucher = ref.VoucherPayload()
    voucher.channel_config, voucher.voucher = _ref_config(config), fields
    parsed = wire.parse_client_payload(_through_json(voucher.to_dict()))
    assert isinstance(parsed, VoucherPayload)
    assert parsed.voucher.max_claimable_amount == 5000
    assert parsed.to_wire() == voucher.to_dict()
    assert ref.VoucherPayload.from_dict(parsed.to_wire()).to_dict() == voucher.to_dict()

    for amount in (None, "1500"):
        refund = ref.RefundPayload()
        refund.channel_config, refund.voucher, refund.amount = _ref_config(config), fields, amount
        parsed_refund = wire.parse_client_payload(_through_json(refund.to_dict()))
        assert isinstance(parsed_refund, RefundPayload)
        assert parsed_refund.amount == (None if amount is None else 1500)
        assert parsed_refund.to_wire() == refund.to_dict()


def test_claim_and_settle_payloads_match_the_reference(
    keys: tuple[LocalSigner, LocalSigner],
) -> None:
    payer, voucher_key = keys
    config = _config(payer.address, voucher_key.address)
    ours = ClaimPayload(
        (VoucherClaim(config, 5000, secrets.token_bytes(65), 4200),),
        authorizer_signature=secrets.token_bytes(65),
    )
    theirs = ref.ClaimPayload.from_dict(_through_json(ours.to_wire()))
    assert theirs.to_dict() == ours.to_wire()
    assert redeem.parse_claim_payload(_through_json(theirs.to_dict())) == ours

    settle = SettlePayload(config.receiver, config.token)
    assert ref.SettlePayload.from_dict(settle.to_wire()).to_dict() == settle.to_wire()
    assert redeem.parse_settle_payload(settle.to_wire()) == settle


def test_corrective_extra_and_payment_response_extra_match_the_reference() -> None:
    state = ChannelStateWire(
        channel_id=secrets.token_bytes(32),
        balance=100_000,
        total_claimed=500,
        withdraw_requested_at=0,
        refund_nonce=1,
        charged_cumulative_amount=3200,
    )
    voucher_state = VoucherStateWire(3200, secrets.token_bytes(65))
    extra = BatchExtra(
        receiver_authorizer=LocalSigner.generate().address,
        withdraw_delay_s=900,
        name="USDC",
        version="2",
        min_deposit=10_000,
        channel_state=state,
        voucher_state=voucher_state,
    )
    theirs = ref.PaymentRequirementsExtra.from_dict(_through_json(extra.to_wire()))
    assert theirs.to_dict() == extra.to_wire()
    assert theirs.channel_state is not None
    assert theirs.channel_state.charged_cumulative_amount == "3200"
    assert extras.parse_extra(_through_json(theirs.to_dict())) == extra

    response = PaymentResponseExtra(charged_amount=700, channel_state=state)
    ref_response = ref.PaymentResponseExtra.from_dict(_through_json(response.to_wire()))
    assert ref_response.to_dict() == response.to_wire()
    assert ref_response.charged_amount == "700"
    assert extras.parse_response_extra(ref_response.to_dict()) == response
    # A refund's response carries no chargedAmount at all.
    assert "chargedAmount" not in PaymentResponseExtra(channel_state=state).to_wire()


def test_the_error_codes_are_the_specs() -> None:
    ours = {name: getattr(wire, name) for name in wire.__all__ if name.startswith("ERR_")}
    for name, code in ours.items():
        assert getattr(codes, name) == code, name


def _good_voucher_payload() -> dict[str, Any]:
    config = _config(LocalSigner.generate().address, LocalSigner.generate().address)
    return VoucherPayload(config, SignedVoucher(secrets.token_bytes(32), 5000, bytes(65))).to_wire()


def _with(data: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("voucher", "maxClaimableAmount"), 5000),  # a number, not a decimal string
        (("voucher", "maxClaimableAmount"), 5000.0),
        (("voucher", "maxClaimableAmount"), "5e3"),
        (("voucher", "maxClaimableAmount"), "-1"),
        (("voucher", "maxClaimableAmount"), "05000"),
        (("voucher", "maxClaimableAmount"), str(2**128)),  # above uint128
        (("voucher", "channelId"), "0x1234"),
        (("voucher", "signature"), "0xabc"),
        (("voucher", "signature"), "0x" + "00" * 5000),
        (("voucher",), _DELETE),
        (("channelConfig", "payer"), "0xnot-an-address"),
        (("channelConfig", "withdrawDelay"), "900"),
        (("channelConfig", "withdrawDelay"), True),
        (("channelConfig", "salt"), 7),
        (("channelConfig",), ["not", "an", "object"]),
    ],
)
def test_malformed_vouchers_are_refused_with_the_payload_code(
    path: tuple[str, ...], value: object
) -> None:
    refused = wire.parse_client_payload(_with(_good_voucher_payload(), path, value))
    assert isinstance(refused, WireRefusal)
    assert refused.reason == codes.ERR_VOUCHER_PAYLOAD
    assert "0xnot-an-address" not in refused.detail  # input is never echoed back


@pytest.mark.parametrize(
    "payload", [None, [], "voucher", {"type": "exact"}, {"type": 1}, {"channelConfig": {}}]
)
def test_payloads_of_no_known_type_are_refused(payload: object) -> None:
    refused = wire.parse_client_payload(payload)
    assert isinstance(refused, WireRefusal)
    assert refused.reason == codes.ERR_INVALID_PAYLOAD_TYPE


def test_bad_deposits_refunds_and_extras_are_values_with_the_specs_codes() -> None:
    base = _good_voucher_payload()
    deposit = {
        **base,
        "type": "deposit",
        "deposit": {
            "amount": "1000",
            "authorization": {
                "erc3009Authorization": {
                    "validAfter": "0",
                    "validBefore": "99",
                    "salt": "0x" + "11" * 32,
                    "signature": "0x" + "22" * 65,
                }
            },
        },
    }
    assert isinstance(wire.parse_client_payload(deposit), DepositPayload)
    for bad in (
        _with(deposit, ("deposit", "amount"), "0"),
        _with(deposit, ("deposit", "amount"), 1000),
        _with(deposit, ("deposit", "authorization"), {}),
        _with(deposit, ("deposit", "authorization", "permit2Authorization"), {}),
        _with(deposit, ("deposit", "authorization", "erc3009Authorization", "validBefore"), 9.5),
    ):
        refused = wire.parse_client_payload(bad)
        assert isinstance(refused, WireRefusal) and refused.reason == codes.ERR_DEPOSIT_PAYLOAD

    refund = {**base, "type": "refund"}
    for amount in ("0", "1.5", 10):
        refused = wire.parse_client_payload({**refund, "amount": amount})
        assert isinstance(refused, WireRefusal)
        assert refused.reason == codes.ERR_REFUND_AMOUNT_INVALID

    extra = {"receiverAuthorizer": TOKEN, "withdrawDelay": 900, "name": "USDC", "version": "2"}
    assert isinstance(extras.parse_extra(extra), BatchExtra)
    refused_extra = extras.parse_extra({**extra, "withdrawDelay": 60})
    assert isinstance(refused_extra, WireRefusal)
    assert refused_extra.reason == codes.ERR_WITHDRAW_DELAY_OUT_OF_RANGE
    refused_extra = extras.parse_extra({**extra, "name": ""})
    assert isinstance(refused_extra, WireRefusal)
    assert refused_extra.reason == codes.ERR_MISSING_EIP712_DOMAIN
    assert isinstance(extras.parse_extra({**extra, "minDeposit": 1.5}), WireRefusal)
    assert isinstance(extras.parse_response_extra({"chargedAmount": 700}), WireRefusal)
    assert isinstance(redeem.parse_claim_payload({"type": "claim", "claims": []}), WireRefusal)
    assert isinstance(redeem.parse_settle_payload({"type": "settle", "receiver": "x"}), WireRefusal)
