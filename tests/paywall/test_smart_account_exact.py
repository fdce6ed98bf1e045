"""Smart-account payers pay ``exact`` through a real paywall and our facilitator on anvil.

A deployed SmartAccount (ERC-1271), a counterfactual one (ERC-6492: the
settlement deploys it and pays in one transaction) and an EIP-7702 EOA
delegating to SmartAccount (signing with its own key) each pay a paywalled
route served over ASGI (and the counterfactual one again with the paywall and
our facilitator's HTTP app each on uvicorn, and through the x402 SDK's own
exact client given our SmartAccountSigner); the token moves from the account to the merchant,
exactly the price, settled on chain. Everything is real: anvil, our
contracts, the paywall with its SQLite store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from x402.http.clients import x402HttpxClient

from farthing.paywall import PaymentStore, RemoteFacilitator
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.wire import PaymentPayload, PaymentRequirements, encode_payment_signature
from farthing.wallet.eip3009 import build_authorization, sign_authorization
from farthing.wallet.signer import LocalSigner, Signer
from farthing.wallet.smart_account import SmartAccountSigner
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    paywalled,
    run,
    serve_in_thread,
)
from tests.paywall.smart_accounts import Accounts, accounts_on, delegate_7702
from tests.paywall.test_x402_sdk import sdk_client

pytestmark = pytest.mark.anvil

FUNDS = 1_000_000


@pytest.fixture(scope="module")
def accounts(chain_env: ChainEnv) -> Accounts:
    return accounts_on(chain_env.chain, chain_env.owner)


def payment_header(accepts: dict[str, Any], signer: Signer) -> str:
    requirements = PaymentRequirements.from_wire(accepts)
    authorization = build_authorization(
        from_address=signer.address, to=requirements.pay_to, value=requirements.amount
    )
    signed = sign_authorization(signer, authorization, requirements.domain())
    payload = PaymentPayload(
        accepted=requirements, authorization=authorization, signature=signed.signature
    )
    return encode_payment_signature(payload)


async def pay(app: Any, signer: Signer) -> tuple[int, dict[str, Any]]:
    async with asgi_client(app) as client:
        first = await client.get("/api/data")
        assert first.status_code == 402
        accepts = next(a for a in challenge_of(first)["accepts"] if a["scheme"] == "exact")
        paid = await client.get(
            "/api/data", headers={"PAYMENT-SIGNATURE": payment_header(accepts, signer)}
        )
        return paid.status_code, (paid.json() if paid.status_code == 200 else {})


def paid_once(env: ChainEnv, store: PaymentStore, signer: Signer) -> None:
    before = env.token.balance_of(env.merchant)
    status, body = run(pay(paywalled(env, store), signer))
    assert status == 200, body
    assert body["secret"] == "paid-data"
    assert env.token.balance_of(signer.address) == FUNDS - PRICE_ATOMIC
    assert env.token.balance_of(env.merchant) == before + PRICE_ATOMIC


def test_deployed_smart_account_pays(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore
) -> None:
    account = accounts.new(deployed=True)
    assert account.deployed and chain_env.chain.code_at(account.address)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok
    paid_once(chain_env, store, account)


def test_counterfactual_smart_account_pays_and_is_deployed(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore
) -> None:
    account = accounts.new(deployed=False)
    assert not account.deployed and not chain_env.chain.code_at(account.address)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok
    paid_once(chain_env, store, account)
    assert chain_env.chain.code_at(account.address), "the settlement deployed the account"
    # Deployed now: the next payment's signature is the plain ERC-1271 one.
    again = SmartAccountSigner.on_chain(
        chain_env.chain, account.owner_signer, factory=account.factory, salt=account.salt
    )
    assert again.deployed and again.address == account.address


def test_eip7702_account_pays_with_its_own_key(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore
) -> None:
    delegate = accounts.new(deployed=True).address  # SmartAccount code to delegate to
    eoa = LocalSigner.generate()
    delegate_7702(chain_env.chain, eoa, delegate, sponsor=chain_env.owner)
    assert chain_env.token.mint(eoa.address, FUNDS, sender=chain_env.owner).ok
    paid_once(chain_env, store, eoa)


def test_a_counterfactual_account_pays_through_uvicorn_servers(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore
) -> None:
    """The paywall on uvicorn asks our facilitator app on uvicorn over HTTP: the 6492 signature travels whole."""
    account = accounts.new(deployed=False)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok
    token = "a-facilitator-key-for-the-paywall"
    with serve_in_thread(facilitator_app(chain_env.facilitator(), token=token)) as facilitator_url:
        remote = RemoteFacilitator(facilitator_url, token=token)
        with serve_in_thread(paywalled(chain_env, store, facilitator=remote)) as url:

            async def go() -> httpx.Response:
                async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
                    first = await http.get("/api/data")
                    accepts = next(
                        a for a in challenge_of(first)["accepts"] if a["scheme"] == "exact"
                    )
                    header = payment_header(accepts, account)
                    paid = await http.get("/api/data", headers={"PAYMENT-SIGNATURE": header})
                await remote.aclose()
                return paid

            paid = run(go())
    assert paid.status_code == 200, paid.text
    assert chain_env.chain.code_at(account.address)
    assert chain_env.token.balance_of(account.address) == FUNDS - PRICE_ATOMIC


@pytest.mark.parametrize("deployed", [True, False], ids=["erc1271", "erc6492"])
def test_the_x402_sdk_client_pays_from_a_smart_account(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore, deployed: bool
) -> None:
    """The official SDK's exact client, handed our SmartAccountSigner as its signer, pays our paywall."""
    account = accounts.new(deployed=deployed)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok

    async def go(url: str) -> httpx.Response:
        async with x402HttpxClient(sdk_client(chain_env, account), timeout=30.0) as http:
            return await http.get(f"{url}/api/data")

    with serve_in_thread(paywalled(chain_env, store)) as url:
        paid = run(go(url))
    assert paid.status_code == 200, paid.text
    assert chain_env.chain.code_at(account.address)
    assert chain_env.token.balance_of(account.address) == FUNDS - PRICE_ATOMIC


@pytest.mark.parametrize("deployed", [True, False], ids=["erc1271", "erc6492"])
def test_a_smart_account_retry_after_its_first_server_died_is_delivered(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore, deployed: bool
) -> None:
    """The first owner of the claim died (its lease ran out): the payer's retry takes it over.

    The takeover checks that the retrier holds the payer's own signature; for a
    contract wallet that is ERC-1271 (or ERC-6492) on our chain, not ECDSA.
    Another key's signature for the same nonce is still refused.
    """
    from tests.paywall.test_lease_takeover import _claim_as_dead_owner

    account = accounts.new(deployed=deployed)
    assert chain_env.token.mint(account.address, FUNDS, sender=chain_env.owner).ok
    app = paywalled(chain_env, store)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with asgi_client(app) as client:
            first = await client.get("/api/data")
            accepts = next(a for a in challenge_of(first)["accepts"] if a["scheme"] == "exact")
            header = payment_header(accepts, account)
            _claim_as_dead_owner(store, accepts, header, lease_s=0.05)
            forged = _with_signature(header, LocalSigner.generate())
            refused = await client.get("/api/data", headers={"PAYMENT-SIGNATURE": forged})
            await asyncio.sleep(0.1)  # the dead owner's lease runs out
            paid = await client.get("/api/data", headers={"PAYMENT-SIGNATURE": header})
            return refused, paid

    refused, paid = run(go())
    assert refused.status_code in (402, 503) and "paid-data" not in refused.text
    assert paid.status_code == 200, paid.text
    assert paid.json()["secret"] == "paid-data"
    assert chain_env.token.balance_of(account.address) == FUNDS - PRICE_ATOMIC


def _with_signature(header: str, signer: LocalSigner) -> str:
    """The same payment (payer, nonce, terms) signed by another key."""
    from farthing.paywall.wire import decode_payment_signature

    payload = decode_payment_signature(header, bytes_max=16384)
    assert isinstance(payload, PaymentPayload)
    from farthing.wallet.eip3009 import TRANSFER_WITH_AUTHORIZATION, typed_data

    signature = signer.sign_typed_data(
        *typed_data(payload.authorization, payload.accepted.domain(), TRANSFER_WITH_AUTHORIZATION)
    )
    return encode_payment_signature(
        PaymentPayload(
            accepted=payload.accepted, authorization=payload.authorization, signature=signature
        )
    )
