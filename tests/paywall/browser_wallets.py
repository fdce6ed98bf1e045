"""Fakes of browser wallet extensions for the Chromium tests, and the browser they run in.

A wallet extension is the one thing the browser tests stand in for. Each fake is
an init script whose requests go, through a Playwright binding, to a Python
function that answers the account and chain questions itself and forwards
signing (``eth_signTypedData_v4``, ``personal_sign``) to anvil, which signs for
its unlocked dev accounts. ``FAKE_WALLET_EXTENSION`` is the old kind (EIP-1193
``window.ethereum``); ``fake_eip6963_wallets`` announces several wallets the way
most extensions now do (EIP-6963), and sets no ``window.ethereum``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.paywall.conftest import ChainEnv

CHROMIUM = Path("/usr/bin/chromium")

FAKE_WALLET_EXTENSION = """
window.ethereum = {
  isFakeWalletExtension: true,
  request: function (args) {
    return window.__fakeWallet(args.method, args.params || []).then(function (answer) {
      // An EIP-1193 refusal is an error with a code (4001: the user said no).
      if (answer && answer.fakeWalletError) {
        var error = new Error(answer.message);
        error.code = answer.fakeWalletError;
        throw error;
      }
      return answer;
    });
  }
};
"""
USER_REJECTED = {"fakeWalletError": 4001, "message": "User rejected the request."}

# EIP-6963: each wallet announces {info, provider} on load and again whenever the
# page dispatches eip6963:requestProvider. The list is filled in by fake_eip6963_wallets.
_EIP6963_ANNOUNCER = """
(function () {
  var wallets = __WALLETS__;
  var details = wallets.map(function (info, n) {
    var provider = {
      request: function (args) {
        return window.__fakeWallet6963(n, args.method, args.params || []).then(function (answer) {
          if (answer && answer.fakeWalletError) {
            var error = new Error(answer.message);
            error.code = answer.fakeWalletError;
            throw error;
          }
          return answer;
        });
      }
    };
    return Object.freeze({ info: Object.freeze(info), provider: provider });
  });
  function announce() {
    details.forEach(function (detail) {
      window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: detail }));
    });
  }
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
}());
"""
# A one-pixel SVG, as the EIP asks (a data URI); the page need not show it.
_ICON = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"


@dataclass
class FakeWallet:
    """What one fake extension holds and what it was asked.

    ``refuse`` names the methods its user declines; ``chain_id`` is the network
    it claims to be on instead of anvil's.
    """

    account: str
    refuse: frozenset[str] = frozenset()
    chain_id: str | None = None
    asked: list[str] = field(default_factory=list)
    typed_data: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, rpc: httpx.Client, method: str, params: list[Any]) -> Any:
        self.asked.append(method)
        if method in self.refuse:
            return USER_REJECTED
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.account]
        if method == "eth_chainId" and self.chain_id is not None:
            return self.chain_id
        if method == "wallet_switchEthereumChain":
            return None  # anvil is the only chain this fake knows
        if method not in ("eth_chainId", "eth_signTypedData_v4", "personal_sign"):
            raise RuntimeError(f"the fake wallet extension does not do {method}")
        if method == "eth_signTypedData_v4":
            self.typed_data.append(json.loads(params[1]))
        answer = rpc.post("", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        body = answer.json()
        if "error" in body:
            raise RuntimeError(str(body["error"]))
        return body["result"]


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium under Playwright (skipped, with the reason, where it is missing)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def _context(browser: Any, chain_env: ChainEnv) -> tuple[Any, httpx.Client]:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    rpc = httpx.Client(base_url=chain_env.chain.rpc_url or "", timeout=30.0)
    context.on("close", lambda _: rpc.close())
    return context, rpc


def reader_with_ethereum(browser: Any, chain_env: ChainEnv, wallet: FakeWallet | None) -> Any:
    """A fresh browser profile whose one extension sets ``window.ethereum`` (none if None)."""
    if wallet is None:
        return browser.new_context(viewport={"width": 900, "height": 900})
    context, rpc = _context(browser, chain_env)

    def answer(_: Any, method: str, params: list[Any]) -> Any:
        return wallet.answer(rpc, method, params)

    context.expose_binding("__fakeWallet", answer)
    context.add_init_script(FAKE_WALLET_EXTENSION)
    return context


def reader_with_eip6963(browser: Any, chain_env: ChainEnv, wallets: dict[str, FakeWallet]) -> Any:
    """A fresh browser profile with one EIP-6963 extension per named wallet, no ``window.ethereum``."""
    context, rpc = _context(browser, chain_env)
    held = list(wallets.values())
    infos = [
        {"uuid": f"00000000-0000-4000-8000-{n:012d}", "name": name, "icon": _ICON,
         "rdns": f"test.fake.{name.split()[0].lower()}"}
        for n, name in enumerate(wallets)
    ]  # fmt: skip

    def answer(_: Any, n: int, method: str, params: list[Any]) -> Any:
        return held[n].answer(rpc, method, params)

    context.expose_binding("__fakeWallet6963", answer)
    context.add_init_script(_EIP6963_ANNOUNCER.replace("__WALLETS__", json.dumps(infos)))
    return context
