"""The committed contract artifacts match their sources and the Python bindings.

When node and the pinned npm ``solc`` are installed, the artifacts are rebuilt
(``node contracts/build.mjs --check``) and any drift fails the test. Without
them (a user install) the rebuild is skipped with the reason; the remaining
checks read the committed artifacts: every call the bindings encode exists in
the ABI, and the deployed contract's type hashes equal the wallet's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak

from farthing.contracts import ARTIFACT_NAMES, load_artifact
from farthing.wallet.chain import Call, MemoryChain
from farthing.wallet.eip712 import TYPE_STRINGS
from farthing.wallet.token import SIGNATURES, deploy_stablecoin

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "contracts" / "build.mjs"


def _abi_signatures(abi: tuple[dict[str, Any], ...]) -> set[str]:
    def canonical(param: dict[str, Any]) -> str:
        kind = str(param["type"])
        if kind.startswith("tuple"):
            return (
                "("
                + ",".join(canonical(c) for c in param["components"])
                + ")"
                + kind[len("tuple") :]
            )
        return kind

    return {
        f"{item['name']}({','.join(canonical(p) for p in item['inputs'])})"
        for item in abi
        if item["type"] == "function"
    }


def test_artifacts_match_a_fresh_compile() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so the artifacts cannot be recompiled")
    if not (REPO / "node_modules" / "solc" / "package.json").exists():
        pytest.skip(
            "npm solc is not installed (run `npm ci`), so the artifacts cannot be recompiled"
        )
    result = subprocess.run(
        [node, str(BUILD_SCRIPT), "--check"],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_every_artifact_loads_with_its_compiler_settings() -> None:
    for name in ARTIFACT_NAMES:
        artifact = load_artifact(name)
        assert artifact.contract_name == name
        assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 2
        assert artifact.deployed_bytecode.startswith("0x")
        assert artifact.evm_version == "prague"
        assert artifact.compiler_version.startswith("0.8.37+")
    with pytest.raises(LookupError):
        load_artifact("Nope")


def test_every_call_the_bindings_encode_is_in_the_abi() -> None:
    available = _abi_signatures(load_artifact("Stablecoin").abi) | _abi_signatures(
        load_artifact("BatchSettler").abi
    )
    missing = {key: sig for key, sig in SIGNATURES.items() if sig not in available}
    assert not missing


def test_the_contract_type_hashes_are_the_wallets() -> None:
    chain = MemoryChain(accounts=1)
    owner = chain.dev_accounts()[0].signer()
    token = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    for constant, type_name in [
        ("TRANSFER_WITH_AUTHORIZATION_TYPEHASH", "TransferWithAuthorization"),
        ("RECEIVE_WITH_AUTHORIZATION_TYPEHASH", "ReceiveWithAuthorization"),
        ("CANCEL_AUTHORIZATION_TYPEHASH", "CancelAuthorization"),
    ]:
        result = chain.call(Call(token.address, keccak(text=f"{constant}()")[:4]))
        (on_chain,) = abi_decode(["bytes32"], result.return_data)
        assert on_chain == keccak(text=TYPE_STRINGS[type_name])
    # The well-known value, as USDC publishes it.
    assert keccak(text=TYPE_STRINGS["TransferWithAuthorization"]).hex() == (
        "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
    )
