"""Smart-account payers open and pay ``batch-settlement`` channels through a real paywall, claimed on chain.

A deployed SmartAccount and an EIP-7702 EOA delegating to SmartAccount each
open a channel whose ``payerAuthorizer`` is zero (the escrow asks the payer:
ERC-1271): the deposit's ReceiveWithAuthorization and every voucher are
verified by our facilitator through the shared signature check, the paywall
(ASGI, anvil, our contracts at the canonical addresses) serves each paid
request, and the receiver authorizer's claim and settle move exactly what was
charged from the escrow. A voucher signed by another key, or wrapped in
ERC-6492 (the escrow never unwraps one), is refused with the voucher
signature code; a deposit whose signature the wallet refuses is refused
before the relayer pays for it. The scheme's client part, as an agent uses
it, pays from a SmartAccountSigner: the account deposits (ERC-1271) and names
its owner key as ``payerAuthorizer``, which signs the vouchers.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from farthing.paywall import PaymentStore
from farthing.paywall.schemes.batch_settlement import client
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow, VoucherClaim
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    ClaimEntry,
    deposit_nonce,
    sign_claim_batch,
    sign_voucher,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.address import ZERO_ADDRESS
from farthing.wallet.eip712 import RECEIVE_WITH_AUTHORIZATION
from farthing.wallet.eip3009 import (
    TokenDomain,
    build_authorization,
    sign_receive_authorization,
    typed_data,
)
from farthing.wallet.erc6492 import wrap
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner, Signer
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
from tests.paywall.smart_accounts import Accounts, accounts_on, delegate_7702
from tests.paywall.test_channel_paywall import DELAY_S, _app, _header, channel_store_fixture

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]

FUNDS = 1_000_000


@pytest.fixture(scope="module")
def accounts(chain_env: ChainEnv) -> Accounts:
    return accounts_on(chain_env.chain, chain_env.owner)


class _SmartChannel:
    """A channel paid by ``payer`` (an account address) whose vouchers ``key`` signs for it."""

    def __init__(self, env: ChainEnv, authorizer: LocalSigner, payer: Signer, key: Signer):
        self.env, self.authorizer, self.payer, self.key = env, authorizer, payer, key
        self.domain = ChannelDomain(env.chain.chain_id)
        self.config = ChannelConfig(
            payer=payer.address,
            payer_authorizer=ZERO_ADDRESS,  # the escrow asks the payer (ERC-1271)
            receiver=env.merchant,
            receiver_authorizer=authorizer.address,
            token=env.asset.address,
            withdraw_delay_s=DELAY_S,
            salt=secrets.token_bytes(32),
        )
        self.id = self.domain.channel_id(self.config)

    def voucher(self, ceiling: int, *, wrapped_by: str | None = None) -> dict[str, Any]:
        signed = sign_voucher(self.key, self.domain, self.id, ceiling)
        wire = signed.to_wire()
        if wrapped_by is not None:
            wire["signature"] = "0x" + wrap(wrapped_by, b"\x01", signed.signature).hex()
        return {"type": "voucher", "channelConfig": self.config.to_wire(), "voucher": wire}

    def deposit(self, amount: int, ceiling: int, *, forged: bool = False) -> dict[str, Any]:
        salt = secrets.randbits(256)
        auth = build_authorization(
            from_address=self.payer.address,
            to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
            value=amount,
            valid_for_s=3600,
            now=self.env.chain.timestamp(),
            nonce=deposit_nonce(self.id, salt),
        )
        domain = TokenDomain.for_asset(self.env.asset)
        if forged:  # another key signs for the account
            typed = typed_data(auth, domain, RECEIVE_WITH_AUTHORIZATION)
            signature = LocalSigner.generate().sign_typed_data(*typed)
        else:
            signature = sign_receive_authorization(self.payer, auth, domain).signature
        payload = self.voucher(ceiling)
        payload["type"] = "deposit"
        payload["deposit"] = {
            "amount": str(amount),
            "authorization": {
                "erc3009Authorization": {
                    "validAfter": str(auth.valid_after),
                    "validBefore": str(auth.valid_before),
                    "salt": "0x" + salt.to_bytes(32, "big").hex(),
                    "signature": "0x" + signature.hex(),
                }
            },
        }
        return payload

    def header(self, payload: dict[str, Any]) -> dict[str, str]:
        return {"payment-signature": _header(self.env, payload, self.authorizer)}


def _error(response: Any) -> str:
    return str(unb64_json(response.headers["payment-required"])["error"])


def _pay_and_claim(
    env: ChainEnv, store: PaymentStore, channels: ChannelStore, ch: _SmartChannel
) -> None:
    app = _app(env, store, channels, ch.authorizer)
    p = PRICE_ATOMIC
    deposit = 20 * p

    def relayer_sent() -> int:
        return int(env.chain.w3.eth.get_transaction_count(env.relayer.address))

    async def go() -> None:
        async with asgi_client(app) as http:
            sent = relayer_sent()
            forged = await http.get(
                "/api/data", headers=ch.header(ch.deposit(deposit, p, forged=True))
            )
            assert forged.status_code == 402
            assert _error(forged) == "invalid_batch_settlement_evm_receive_authorization_signature"
            assert relayer_sent() == sent
            first = await http.get("/api/data", headers=ch.header(ch.deposit(deposit, p)))
            assert first.status_code == 200, first.text
            for n in (2, 3):
                paid = await http.get("/api/data", headers=ch.header(ch.voucher(n * p)))
                assert paid.status_code == 200, paid.text
            # Another key's voucher, and a wrapped one, are refused; nothing is charged.
            other = _SmartChannel(env, ch.authorizer, ch.payer, LocalSigner.generate())
            other.config, other.id = ch.config, ch.id
            for payload in (other.voucher(4 * p), ch.voucher(4 * p, wrapped_by=env.merchant)):
                refused = await http.get("/api/data", headers=ch.header(payload))
                assert refused.status_code == 402
                assert _error(refused) == "invalid_batch_settlement_evm_voucher_signature"

    asyncio.run(go())
    assert env.token.balance_of(ch.payer.address) == FUNDS - deposit
    # The receiver authorizer claims what was charged: the escrow asks the wallet again.
    (record,) = [r for r in channels.records() if r.channel_id == ch.id]
    assert record.charged == 3 * p
    claim = VoucherClaim(record.config, record.signed_max, record.signature or b"", record.charged)
    entry = ClaimEntry(record.channel_id, record.signed_max, record.charged)
    signature = sign_claim_batch(ch.authorizer, channels.domain, [entry])
    escrow = ChannelEscrow(env.chain)
    before = env.token.balance_of(env.merchant)
    assert escrow.claim_with_signature([claim], signature, sender=env.relayer).ok
    assert escrow.channel(ch.id) == (deposit, 3 * p)
    assert escrow.settle(env.merchant, env.asset.address, sender=env.relayer).ok
    assert env.token.balance_of(env.merchant) == before + 3 * p


def test_a_deployed_smart_account_pays_through_a_channel(
    chain_env: ChainEnv,
    accounts: Accounts,
    store: PaymentStore,
    channel_store: ChannelStore,
) -> None:
    account = accounts.new(deployed=True)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok
    ch = _SmartChannel(chain_env, LocalSigner.generate(), account, account)
    _pay_and_claim(chain_env, store, channel_store, ch)


def test_an_eip7702_account_pays_through_a_channel(
    chain_env: ChainEnv,
    accounts: Accounts,
    store: PaymentStore,
    channel_store: ChannelStore,
) -> None:
    eoa = LocalSigner.generate()
    delegate_7702(
        chain_env.chain, eoa, accounts.new(deployed=True).address, sponsor=chain_env.owner
    )
    assert chain_env.token.mint(eoa.address, FUNDS, sender=chain_env.owner).ok
    ch = _SmartChannel(chain_env, LocalSigner.generate(), eoa, eoa)
    _pay_and_claim(chain_env, store, channel_store, ch)


def test_the_scheme_client_pays_a_channel_from_a_smart_account(
    chain_env: ChainEnv,
    accounts: Accounts,
    store: PaymentStore,
    channel_store: ChannelStore,
) -> None:
    """The client part as an agent uses it: the account deposits (ERC-1271), its owner key signs vouchers."""
    env, authorizer = chain_env, LocalSigner.generate()
    account = accounts.new(deployed=True)
    assert env.token.mint(account.address, FUNDS, sender=env.owner).ok
    app = _app(env, store, channel_store, authorizer)
    domain = ChannelDomain(env.chain.chain_id)
    p = PRICE_ATOMIC

    async def go() -> None:
        async with asgi_client(app) as http:
            offered = await http.get("/api/data")
            challenge = unb64_json(offered.headers["payment-required"])
            (accepts,) = [a for a in challenge["accepts"] if a["scheme"] == "batch-settlement"]
            extra = client.read_offer(accepts["extra"])
            assert not isinstance(extra, client.OfferRefusal)
            config = client.channel_config(
                payer=account.address,
                receiver=accepts["payTo"],
                token=accepts["asset"],
                extra=extra,
                salt=secrets.token_bytes(32),
                payer_authorizer=client.voucher_signer(account).address,
            )
            assert config.payer_authorizer == account.owner
            channel_id = client.channel_id_of(domain, config)
            authorization = client.deposit_authorization(
                payer=account.address,
                collector=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
                channel_id=channel_id,
                deposit_id=1,
                value=10 * p,
                now=env.chain.timestamp(),
                valid_for_s=600,
                max_timeout_seconds=int(accepts["maxTimeoutSeconds"]),
            )
            deposit = client.sign_deposit(account, env.asset, channel_id, authorization, 1)
            for n in (1, 2):
                payload = client.voucher_payload(
                    account, domain, config, channel_id, n * p,
                    deposit=deposit if n == 1 else None, deposit_amount=10 * p,
                )  # fmt: skip
                name, value = client.payment_header(
                    payload, accepted=accepts, resource=None, url="http://paywall.test/api/data"
                )
                paid = await http.get("/api/data", headers={name: value})
                assert paid.status_code == 200, paid.text

    asyncio.run(go())
    assert env.token.balance_of(account.address) == FUNDS - 10 * PRICE_ATOMIC
    (record,) = [r for r in channel_store.records() if r.config.payer == account.address]
    assert record.charged == 2 * PRICE_ATOMIC
