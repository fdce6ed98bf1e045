"""The benchmarks' chain and server processes: anvil with our token, a paywall started and stopped.

``bench_paywall``, ``bench_channels`` and ``soak_paywall`` start the same way
(:func:`serve_or_run` is their entry).
:func:`anvil_stage` starts anvil, deploys our token (and, for channels, our
escrow contracts at the canonical addresses), funds a payer and names a
merchant. Each server is the script itself re-invoked with ``--serve``
(:func:`start_server`; the paywall fuzzer's upstream starts the same way); in that process :func:`server_chain` reads the chain,
:func:`listen` binds 127.0.0.1, and :func:`serve` announces the URL and the
process id as one JSON line and runs the app under uvicorn.
:func:`stop_server` ends it. :func:`paid_site`, :func:`our_paywall`,
:func:`channel_store` and :func:`x402_sdk_app` are the server parts more than
one benchmark builds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    """A running anvil with our token, a funded payer and a merchant, and a scratch folder."""

    rpc_url: str
    chain: Any
    workdir: str
    owner: Any
    asset: Any
    token: Any
    payer: Any
    merchant: str


@contextmanager
def anvil_stage(prefix: str, *, payer_funds: int, channels: bool) -> Iterator[Stage]:
    """Anvil, our token (the owner its minter), ``payer_funds`` for a new payer; channels on request."""
    from farthing.devchain.node import start_anvil
    from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

    with start_anvil() as node, tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        chain = node.chain(receipt_timeout_s=30.0)
        owner = chain.dev_accounts()[0].signer()
        asset = deploy_stablecoin(chain, sender=owner)
        token = Stablecoin(chain, asset)
        if not token.configure_minter(owner.address, sender=owner).ok:
            raise RuntimeError("cannot make the owner a minter")
        if channels:
            place_channel_contracts(chain)
        payer = LocalSigner.generate()
        if not token.mint(payer.address, payer_funds, sender=owner).ok:
            raise RuntimeError("cannot fund the payer")
        merchant = LocalSigner.generate().address
        yield Stage(node.rpc_url, chain, workdir, owner, asset, token, payer, merchant)


# ---------------------------------------------------------------- the server process


def serve_or_run(main: Callable[[], object], serve_as: Callable[..., None]) -> None:
    """A script's entry: ``--serve ARGS`` makes it the server (the repository importable), else ``main``."""
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        repo = str(Path(__file__).resolve().parents[1])
        if repo not in sys.path:
            sys.path.insert(0, repo)
        serve_as(*sys.argv[2:])
    else:
        main()


def start_server(
    script: str, *args: str, log: Path | None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``script ARGS`` (``--serve …``) as a process, and the JSON line it prints when it listens.

    Its stderr goes to ``log`` (or nowhere): a pipe nobody reads would fill
    during a long run and stall the server.
    """
    with log.open("w") if log is not None else open(os.devnull, "w") as errors:
        process = subprocess.Popen(
            [sys.executable, script, *args],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        said = log.read_text()[-2000:] if log is not None else ""
        raise RuntimeError(f"the server ({Path(script).name} {args[1]}) did not start: {said}")
    ready: dict[str, Any] = json.loads(line)
    return process, ready


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def server_chain(rpc_url: str, token: str) -> tuple[Any, Any, list[Any]]:
    """In the server: the chain, our token's asset and the dev accounts."""
    from farthing.wallet.chain import RpcChain
    from farthing.wallet.token import read_asset

    chain = RpcChain(rpc_url, timeout_s=10.0, receipt_timeout_s=30.0)
    return chain, read_asset(chain, token), chain.dev_accounts()


def listen() -> tuple[socket.socket, str]:
    """A socket bound on 127.0.0.1 (any free port) and its URL."""
    from farthing.paywall.facilitator.cli import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    return sock, f"http://{host}:{port}"


def serve(app: Any, sock: socket.socket, url: str, *, lifespan: bool = False) -> None:
    """Say where the server listens (one JSON line), then serve ``app`` until stopped.

    ``lifespan`` runs the app's ASGI lifespan (an MCP server's session manager needs it).
    """
    from farthing.paywall.facilitator.cli import serve_app

    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    if not lifespan:
        serve_app(app, sock)
        return
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


# ---------------------------------------------------------------- the server parts


def paid_site() -> Any:
    """The site behind our paywall: ``/paid`` answers JSON."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def paid(request: Any) -> JSONResponse:
        return JSONResponse({"data": "paid content"})

    return Starlette(routes=[Route("/paid", paid)])


def our_paywall(
    route: Any, *, chain: Any, relayer: Any, merchant: str, asset: Any, workdir: str,
    channels: Any = None,
) -> Any:  # fmt: skip
    """Our ``PaywallMiddleware`` in front of :func:`paid_site`: the in-process facilitator
    sending from ``relayer``, a SQLite payment store in ``workdir``."""
    from farthing.paywall import LocalFacilitator, PaymentStore, PaywallMiddleware, PaywallOptions

    return PaywallMiddleware(
        paid_site(),
        options=PaywallOptions(
            routes=[route],
            facilitator=LocalFacilitator(chain, relayer),
            store=PaymentStore.sqlite(Path(workdir) / "payments.sqlite"),
            pay_to=merchant,
            asset=asset,
            channels=channels,
        ),
    )


def channel_store(chain: Any, database_url: str) -> Any:
    """Our channel store on ``database_url``, over the escrow at its canonical address."""
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore
    from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain

    return ChannelStore(
        database_url,
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )


def x402_sdk_app(
    server: Any, *, scheme: str, price_atomic: int, merchant: str, asset: Any, network: str
) -> Any:
    """The x402 SDK's FastAPI ``payment_middleware`` (over ``server``) in front of ``GET /paid``."""
    from fastapi import FastAPI
    from x402.http.middleware.fastapi import payment_middleware

    price = {
        "amount": str(price_atomic),
        "asset": asset.address,
        "extra": {"name": asset.name, "version": asset.version},
    }
    accepts = {"scheme": scheme, "payTo": merchant, "price": price, "network": network}
    app = FastAPI()
    middleware = payment_middleware({"GET /paid": {"accepts": accepts}}, server)

    @app.middleware("http")
    async def x402(request: Any, call_next: Any) -> Any:
        return await middleware(request, call_next)

    @app.get("/paid")
    async def paid_route() -> dict[str, str]:
        return {"data": "paid content"}

    return app
