"""Shared fixtures of the crash-point suite: one anvil per module, our token, a settling key, an upstream site.

Each module gets its own anvil (tests that move its clock may), with the
Stablecoin deployed and a dev account's key written to a private file for the
paywall's facilitator. The upstream site that ``farthing paywall serve``
fronts is a real uvicorn on 127.0.0.1 in this process. Processes, books and
invariant checks live in ``tests/faults/harness.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from farthing.devchain.node import start_anvil
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import anvil_missing_reason
from tests.faults.harness import FaultChain
from tests.paywall.conftest import inner_app, serve_in_thread


@pytest.fixture(scope="module")
def fault_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultChain]:
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("faults")
    with start_anvil() as node, serve_in_thread(inner_app()) as upstream:
        chain = node.chain(timeout_s=5.0, receipt_timeout_s=30.0)
        accounts = chain.dev_accounts()
        owner, relayer = accounts[0].signer(), accounts[3]
        asset = deploy_stablecoin(chain, sender=owner)
        token = Stablecoin(chain, asset)
        assert token.configure_minter(owner.address, sender=owner).ok
        key_file = work / "relayer.key"
        key_file.write_text(relayer.private_key.get_secret_value())
        os.chmod(key_file, 0o600)
        try:
            yield FaultChain(node, chain, asset, token, owner, key_file, upstream, work)
        finally:
            chain.close()
