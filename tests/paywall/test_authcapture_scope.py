"""The auth-capture facilitator settles only the tokens and payees it was set up for.

On the memory chain with the escrow in place, an ``AuthCaptureFacilitator``
whose scope names another token, or another payee, refuses a correctly signed
hold in verify and in settle (``asset_not_supported`` / ``payee_not_allowed``)
and moves nothing; the same payment in scope is held.
"""

from __future__ import annotations

import pytest

from farthing.paywall.schemes.auth_capture.facilitator import AuthCaptureFacilitator
from farthing.paywall.scope import SettleScope
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from tests.paywall.test_authcapture_facilitator import Setup, _setup


@pytest.fixture
def s(chain: Chain) -> Setup:
    return _setup(chain)


@pytest.mark.parametrize("outside", ["asset", "payee"])
def test_a_hold_outside_the_scope_is_refused(s: Setup, outside: str) -> None:
    other = LocalSigner.generate().address
    scope = (
        SettleScope.of([other], [s.receiver])
        if outside == "asset"
        else SettleScope.of([s.token.address], [other])
    )
    scoped = AuthCaptureFacilitator(s.chain, s.operator, scope=scope)
    req = s.requirements()
    payment, _, _ = s.pay(req)
    before = s.balances()
    reason = "asset_not_supported" if outside == "asset" else "payee_not_allowed"
    checked = scoped.verify(payment, req)
    assert (checked.valid, checked.reason) == (False, reason)
    settled = scoped.settle(payment, req)
    assert (settled.success, settled.reason, settled.transaction) == (False, reason, "")
    assert s.balances() == before
    inside = AuthCaptureFacilitator(
        s.chain, s.operator, scope=SettleScope.of([s.token.address], [s.receiver])
    )
    assert inside.settle(payment, req).success
