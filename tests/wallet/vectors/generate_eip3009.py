"""Write ``eip3009.json``: EIP-3009 known-answer vectors made by eth-account alone.

Run ``python tests/wallet/vectors/generate_eip3009.py`` only to extend the set;
the committed JSON is the answer key, so regenerating must not change it (the
keys, nonces and times are fixed and eth-account signs deterministically, per
RFC 6979). This script deliberately uses nothing from ``farthing``: the vectors
must be an independent reference for the code under test.

The private keys are keccak256 of a public seed string. They are test keys
that anyone can derive; never send value to their addresses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

OUT = Path(__file__).with_name("eip3009.json")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

DOMAINS = [
    # USDC on Base: EIP-712 name "USD Coin".
    {
        "name": "USD Coin",
        "version": "2",
        "chainId": 8453,
        "verifyingContract": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    },
    # USDC on Base Sepolia: EIP-712 name "USDC".
    {
        "name": "USDC",
        "version": "2",
        "chainId": 84532,
        "verifyingContract": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    },
    # The local anvil chain's first deployment address.
    {
        "name": "Farthing Dollar",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    },
    # Non-ASCII name: the string is hashed as UTF-8.
    {
        "name": "Dólar ₮ test",
        "version": "",
        "chainId": 1,
        "verifyingContract": "0x0000000000000000000000000000000000000001",
    },
]

AUTH_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
CANCEL_FIELDS = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]


def key_for(seed: str) -> bytes:
    key = keccak(text=seed)
    if not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise SystemExit(f"seed {seed!r} gives an out-of-range key; pick another")
    return key


def digest_of(signable: Any) -> bytes:
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def authorization_vector(index: int, primary_type: str) -> dict[str, Any]:
    seed = f"farthing-eip3009-vector-key-{index}"
    account = Account.from_key(key_for(seed))
    payee = Account.from_key(key_for(f"farthing-eip3009-vector-payee-{index}")).address
    domain = DOMAINS[index % len(DOMAINS)]
    value = [0, 1, 10_000, 2**256 - 1][index % 4] if index < 8 else 1_000 * index + 7
    valid_after = 0 if index % 5 == 0 else 1_700_000_000 + index
    valid_before = 2**256 - 1 if index % 7 == 3 else 1_700_000_000 + index + 3_600
    nonce = keccak(text=f"farthing-eip3009-vector-nonce-{index}")
    message = {
        "from": account.address,
        "to": account.address if index == 6 else payee,  # paying oneself is legal
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    types = {primary_type: AUTH_FIELDS}
    signable = encode_typed_data(domain, types, message)
    signed = account.sign_message(signable)
    return {
        "id": f"{primary_type}-{index}",
        "primaryType": primary_type,
        "keySeed": seed,
        "signer": account.address,
        "domain": domain,
        "message": {
            "from": message["from"],
            "to": message["to"],
            "value": str(value),
            "validAfter": str(valid_after),
            "validBefore": str(valid_before),
            "nonce": "0x" + nonce.hex(),
        },
        "digest": "0x" + digest_of(signable).hex(),
        "signature": "0x" + bytes(signed.signature).hex(),
    }


def cancel_vector(index: int) -> dict[str, Any]:
    seed = f"farthing-eip3009-vector-key-{index}"
    account = Account.from_key(key_for(seed))
    domain = DOMAINS[index % len(DOMAINS)]
    nonce = keccak(text=f"farthing-eip3009-vector-nonce-{index}")
    signable = encode_typed_data(
        domain,
        {"CancelAuthorization": CANCEL_FIELDS},
        {"authorizer": account.address, "nonce": nonce},
    )
    signed = account.sign_message(signable)
    return {
        "id": f"CancelAuthorization-{index}",
        "primaryType": "CancelAuthorization",
        "keySeed": seed,
        "signer": account.address,
        "domain": domain,
        "message": {"authorizer": account.address, "nonce": "0x" + nonce.hex()},
        "digest": "0x" + digest_of(signable).hex(),
        "signature": "0x" + bytes(signed.signature).hex(),
    }


def main() -> None:
    vectors = [authorization_vector(i, "TransferWithAuthorization") for i in range(20)]
    vectors += [authorization_vector(i, "ReceiveWithAuthorization") for i in range(20, 24)]
    vectors += [cancel_vector(i) for i in range(24, 27)]
    document = {
        "about": "EIP-3009 known-answer vectors signed by eth-account; test keys only.",
        "typehashes": {
            name: "0x" + keccak(text=text).hex()
            for name, text in {
                "EIP712Domain": "EIP712Domain(string name,string version,uint256 chainId,"
                "address verifyingContract)",
                "TransferWithAuthorization": "TransferWithAuthorization(address from,address to,"
                "uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)",
                "ReceiveWithAuthorization": "ReceiveWithAuthorization(address from,address to,"
                "uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)",
                "CancelAuthorization": "CancelAuthorization(address authorizer,bytes32 nonce)",
            }.items()
        },
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
