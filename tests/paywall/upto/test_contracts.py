"""Our Permit2 and x402UptoPermit2Proxy speak the reference's ABI and sit at the canonical addresses.

The proxy's functions are compared with the x402 SDK's ABI (``settle`` and
``settleWithPermit``, argument for argument), every custom error the SDK maps
to a reason exists in our artifacts, and every call our binding encodes is in
the ABIs. On the memory chain and anvil, ``place_upto_contracts`` puts the code
at the canonical addresses (idempotently) and the placed contracts answer
with the spec's witness type string, Permit2's address and an EIP-712 domain
equal to the one eth-account hashes for ``{"name": "Permit2", chainId,
verifyingContract}``. Permit2's own calls work as Uniswap's: a plain signed
transfer moves once to its spender, and a payer's ``invalidateUnorderedNonces``
spends a permit's nonce before it is settled.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_account.messages import encode_typed_data
from x402.mechanisms.evm import constants as x402_evm

from farthing.contracts import load_artifact
from farthing.paywall.schemes.upto.contract import (
    ERC20_SIGNATURES,
    PERMIT2_ADDRESS,
    PERMIT2_SIGNATURES,
    PROXY_SIGNATURES,
    UPTO_PROXY_ADDRESS,
    WITNESS_TYPE_STRING,
    place_upto_contracts,
)
from farthing.wallet.abi_words import keccak
from farthing.wallet.chain import Call, Chain


def _canonical(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _functions(abi: Any) -> dict[str, tuple[list[str], list[str]]]:
    return {
        item["name"]: (
            [_canonical(p) for p in item["inputs"]],
            [_canonical(p) for p in item.get("outputs", [])],
        )
        for item in abi
        if item["type"] == "function"
    }


def _signatures(abi: Any) -> set[str]:
    return {f"{name}({','.join(ins)})" for name, (ins, _) in _functions(abi).items()}


def test_the_proxy_abi_is_the_x402_reference_abi() -> None:
    ours = _functions(load_artifact("X402UptoPermit2Proxy").abi)
    reference = _functions(
        x402_evm.X402_UPTO_PERMIT2_PROXY_ABI
        + x402_evm.X402_UPTO_PERMIT2_PROXY_SETTLE_WITH_PERMIT_ABI
    )
    assert {name: ours.get(name) for name in reference} == reference
    # The views the TypeScript SDK's ABI lists beside them.
    assert ours["PERMIT2"] == ([], ["address"])
    assert ours["WITNESS_TYPEHASH"] == ([], ["bytes32"])
    assert ours["WITNESS_TYPE_STRING"] == ([], ["string"])


def test_every_error_the_sdk_maps_is_in_our_contracts() -> None:
    errors = {
        item["name"]
        for name in ("Permit2", "X402UptoPermit2Proxy")
        for item in load_artifact(name).abi
        if item["type"] == "error"
    }
    # The names x402's upto facilitator reads from a revert (permit2_utils._map_upto_settle_error).
    assert {
        "Permit2612AmountMismatch", "InvalidAmount", "AmountExceedsPermitted",
        "UnauthorizedFacilitator", "InvalidDestination", "InvalidOwner", "PaymentTooEarly",
        "InvalidSignature", "SignatureExpired", "InvalidNonce", "ReentrancyGuardReentrantCall",
        "InvalidPermit2Address",
    } <= errors  # fmt: skip
    events = {
        item["name"]
        for item in load_artifact("X402UptoPermit2Proxy").abi
        if item["type"] == "event"
    }
    assert {"Settled", "SettledWithPermit", "EIP2612PermitFailedWithReason"} <= events


def test_every_call_the_binding_encodes_is_in_the_abis() -> None:
    assert set(PROXY_SIGNATURES.values()) <= _signatures(load_artifact("X402UptoPermit2Proxy").abi)
    permit2 = _signatures(load_artifact("Permit2").abi)
    assert set(PERMIT2_SIGNATURES.values()) <= permit2
    assert {
        "permitTransferFrom(((address,uint256),uint256,uint256),(address,uint256),address,bytes)",
        "permitWitnessTransferFrom(((address,uint256),uint256,uint256),(address,uint256),address,bytes32,string,bytes)",
        "invalidateUnorderedNonces(uint256,uint256)",
    } <= permit2  # Uniswap Permit2's signature-transfer functions
    assert set(ERC20_SIGNATURES.values()) <= _signatures(load_artifact("Stablecoin").abi)


def _read(chain: Chain, address: str, name: str, kind: str) -> Any:
    result = chain.call(Call(address, keccak(f"{name}()".encode())[:4]))
    assert result.ok, name
    return abi_decode([kind], result.return_data)[0]


def test_placed_contracts_answer_with_the_specs_constants(chain: Chain) -> None:
    assert place_upto_contracts(chain) == (PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS)
    code = chain.code_at(UPTO_PROXY_ADDRESS)
    assert place_upto_contracts(chain) == (PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS)  # idempotent
    assert chain.code_at(UPTO_PROXY_ADDRESS) == code
    assert _read(chain, UPTO_PROXY_ADDRESS, "WITNESS_TYPE_STRING", "string") == WITNESS_TYPE_STRING
    assert _read(chain, UPTO_PROXY_ADDRESS, "WITNESS_TYPEHASH", "bytes32") == keccak(
        b"Witness(address to,address facilitator,uint256 validAfter)"
    )
    assert _read(chain, UPTO_PROXY_ADDRESS, "PERMIT2", "address").lower() == PERMIT2_ADDRESS.lower()
    expected = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Empty": [],
            },
            "primaryType": "Empty",
            "domain": {
                "name": "Permit2",
                "chainId": chain.chain_id,
                "verifyingContract": PERMIT2_ADDRESS,
            },
            "message": {},
        }
    ).header
    assert _read(chain, PERMIT2_ADDRESS, "DOMAIN_SEPARATOR", "bytes32") == expected


def test_permit2_plain_transfers_and_nonce_invalidation(upto_env: Any) -> None:
    """Permit2's own calls: a plain signed transfer to its spender, once; a payer cancels a nonce."""
    from farthing.paywall.schemes.calldata import arg_types, encode_call
    from farthing.paywall.schemes.upto import types as codes
    from farthing.paywall.schemes.upto.contract import custom_error_name
    from farthing.paywall.schemes.upto.permit import permit2_domain

    env = upto_env
    spender = env.outsider  # any account may be the spender of a plain permit
    deadline = env.chain.timestamp() + 300
    types = {
        "PermitTransferFrom": [
            {"name": "permitted", "type": "TokenPermissions"},
            {"name": "spender", "type": "address"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ],
        "TokenPermissions": [
            {"name": "token", "type": "address"},
            {"name": "amount", "type": "uint256"},
        ],
    }
    message = {
        "permitted": {"token": env.asset.address, "amount": 700},
        "spender": spender.address,
        "nonce": 77,
        "deadline": deadline,
    }
    signature = env.payer.sign_typed_data(
        permit2_domain(env.chain.chain_id), types, "PermitTransferFrom", message
    )
    text = "permitTransferFrom(((address,uint256),uint256,uint256),(address,uint256),address,bytes)"
    args = [
        ((env.asset.address, 700), 77, deadline),
        (env.payee.address, 500),
        env.payer.address,
        signature,
    ]
    call = Call(PERMIT2_ADDRESS, encode_call(text, arg_types(text), args))
    assert env.chain.send(call, sender=spender).ok
    assert env.balance(env.payee) == 500
    again = env.chain.call(call, sender=spender.address)
    assert custom_error_name(again.revert_message) == "InvalidNonce"
    # The payer spends a nonce before any permit with it is settled.
    payment = env.pay()
    nonce = payment.authorization.nonce
    cancel = "invalidateUnorderedNonces(uint256,uint256)"
    mask = 1 << (nonce & 0xFF)
    sent = env.chain.send(
        Call(PERMIT2_ADDRESS, encode_call(cancel, arg_types(cancel), [nonce >> 8, mask])),
        sender=env.payer,
    )
    assert sent.ok
    assert env.facilitator.verify(payment, env.offer()).reason == codes.ERR_NONCE_USED


def test_the_network_table_names_the_official_upto_contracts() -> None:
    """Base and Base Sepolia (and the local chains, where ours are placed) use the SDK's addresses."""
    from farthing.wallet.networks import CANONICAL_UPTO_CONTRACTS, NETWORKS

    official = (x402_evm.PERMIT2_ADDRESS, x402_evm.X402_UPTO_PERMIT2_PROXY_ADDRESS)
    for name in ("base", "base-sepolia", "local"):
        upto = NETWORKS[name].upto
        assert (upto.permit2, upto.proxy) == official, name
    assert NETWORKS["base"].upto == CANONICAL_UPTO_CONTRACTS
