"""``farthing inference serve|build-model|gateway|price``.

- ``serve`` starts vLLM's OpenAI-compatible server with the flags that make
  agents reliable (``farthing.inference.command``), shows progress until
  ``/health`` answers, prints the base URL (``--json``: one line), and stops
  the whole vLLM process group on Ctrl-C or SIGTERM: SIGTERM, ``STOP_GRACE_S``
  of grace, then SIGKILL, so it exits within ``STOP_BOUND_S`` with one line
  saying which it took. A second Ctrl-C kills at once.
- ``build-model`` builds the tiny random Llama the tests serve.
- ``gateway`` sells a vLLM server per call behind the x402 paywall, and
  answers only its own host names (``farthing.web.HostGuard``: the loopback
  names on a loopback bind, ``--public-url``'s host, ``--allowed-host``); with
  ``--channel-authorizer-key-file`` it also sells per token through x402
  ``batch-settlement`` channels (``farthing.paywall.site.channels``), and
  claims what they earn in the background while it serves.
- ``price`` reports the price per 1k tokens and every input behind it.

Every option falls back to ``FARTHING_INFERENCE_*`` (see
``farthing.inference.settings``); a flag wins over the environment.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from pydantic import ValidationError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

from farthing.console import emit_json, err_console, fail, out_console
from farthing.inference.settings import InferenceSettings
from farthing.paywall.site.options import (
    ChannelClaimEveryOpt,
    ChannelClaimIntervalOpt,
    ChannelClaimThresholdOpt,
    ChannelMinDepositOpt,
    ChannelWithdrawDelayOpt,
    channel_authorizer_option,
)

__all__ = ["app", "load_settings"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Serve a model with vLLM, and sell it per call behind an x402 paywall.",
)

_PROGRESS_EVERY_S = 10.0
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON line for scripts.")]


def load_settings(**flags: Any) -> InferenceSettings:
    """Settings from the environment, with the flags that were given on top."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return InferenceSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"invalid inference setting {where}: {first['msg']}")


@app.command()
def serve(
    model: Annotated[
        str | None, typer.Option("--model", help="Model directory or hub name.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address vLLM listens on.")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cuda or cpu (default: cuda when present).")
    ] = None,
    python: Annotated[
        Path | None, typer.Option("--python", help="Interpreter with vLLM (default: .venv-vllm).")
    ] = None,
    served_model_name: Annotated[str | None, typer.Option("--served-model-name")] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", min=16)] = None,
    startup_timeout_s: Annotated[float | None, typer.Option("--startup-timeout-s", min=1)] = None,
    log_file: Annotated[Path | None, typer.Option("--log-file", help="vLLM's output.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start vLLM's OpenAI-compatible server, wait until healthy, and print its base URL."""
    from farthing.inference.errors import ServerStartError
    from farthing.inference.server import KILL_WAIT_S, STOP_GRACE_S, VllmServer

    settings = load_settings(
        model=model,
        port=port,
        host=host,
        device=device,
        python=python,
        served_model_name=served_model_name,
        max_model_len=max_model_len,
        startup_timeout_s=startup_timeout_s,
    )
    if not settings.model:
        fail(
            "no model: pass --model PATH_OR_NAME (farthing inference build-model makes a tiny one)"
        )
    server = VllmServer(settings, log_path=log_file, stop_grace_s=STOP_GRACE_S)
    interrupts = _Interrupts(server)
    # Installed whatever the inherited disposition: a shell running us in the
    # background without job control ignores SIGINT, and then the Ctrl-C (or
    # kill -INT) meant to stop the server would do nothing at all.
    previous = {sig: signal.signal(sig, interrupts) for sig in _STOP_SIGNALS}
    last_report = [0.0]

    def progress(waited_s: float, line: str) -> None:
        if as_json:
            if waited_s - last_report[0] >= _PROGRESS_EVERY_S:
                last_report[0] = waited_s
                err_console.print(f"waiting for vLLM /health ({waited_s:.0f} s)")
        else:
            status.update(f"waiting for vLLM /health ({waited_s:.0f} s): {line[-100:]}")

    try:
        if not as_json:
            out_console.print(
                f"starting vLLM ({server.device}) for {settings.model} on port {server.port}; "
                f"log: {server.log_path}"
            )
        with interrupts.held():
            server.start()
        with err_console.status("starting vLLM") as status:
            try:
                url = server.wait_ready(progress=progress)
            except ServerStartError as exc:
                if exc.log_tail:
                    err_console.print(exc.log_tail, markup=False, highlight=False)
                raise
        pid = server.process.pid if server.process else None
        if as_json:
            emit_json(
                {
                    "base_url": url,
                    "model": server.model_name,
                    "device": server.device,
                    "pid": pid,
                    "log": str(server.log_path),
                }
            )
        else:
            out_console.print(f"vLLM ready: {url} (model {server.model_name}); Ctrl-C stops it")
        while server.alive():
            time.sleep(0.5)
        code = server.process.returncode if server.process else None
        fail(f"vLLM exited with code {code}; see {server.log_path}")
    except KeyboardInterrupt:
        pass  # a clean stop, below
    finally:
        interrupts.stopping = True
        report = server.stop()
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python; leave ours
                signal.signal(sig, handler)
    # Human lines go to stderr under --json, so stdout stays one JSON line.
    console = err_console if as_json else out_console
    if report.survivors:
        group = server.process.pid if server.process else None
        fail(
            f"vLLM's process group {group} was still alive {KILL_WAIT_S:g} s after SIGKILL; "
            f"check it with: ps -o pid,stat,args -g {group}"
        )
    if interrupts.forced:
        console.print(
            "vLLM's process group was killed (SIGKILL) on a second interrupt, "
            f"after {report.elapsed_s:.1f} s"
        )
    elif report.killed:
        console.print(
            f"vLLM did not stop within {server.stop_grace_s:g} s of SIGTERM; "
            f"its process group was killed (SIGKILL) after {report.elapsed_s:.1f} s"
        )
    else:
        console.print(f"vLLM stopped ({report.elapsed_s:.1f} s)")


class _Interrupts:
    """The SIGINT/SIGTERM handler of ``serve``: the first signal stops, a later one kills.

    The first raises ``KeyboardInterrupt`` to end the wait. Once the stop has
    begun, a signal must not interrupt it (that would leave the group
    running), so it cuts the grace short with SIGKILL instead. While vLLM is
    being started a signal is held and acted on right after, so it cannot
    land between the fork and ``server.process`` being set, leaving a group
    nobody stops. (Not with a blocked signal mask: the child would inherit
    it, and vLLM would never see our SIGTERM.)
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.stopping = False
        self.forced = False  # a signal came during the stop and killed the group
        self._holding = False
        self._held = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            self.forced = True
            self.server.kill()
        elif self._holding:
            self._held = True
        else:
            self.stopping = True
            raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._held:
            self.stopping = True
            raise KeyboardInterrupt


@app.command("build-model")
def build_model(
    out: Annotated[Path | None, typer.Option("--out", help="Directory to build into.")] = None,
    python: Annotated[Path | None, typer.Option("--python", help="Interpreter with vLLM.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Build the tiny random Llama (2 layers, local BPE tokenizer, tool-aware chat template)."""
    from farthing.inference.builder import build_tiny_model
    from farthing.inference.errors import ModelBuildError

    settings = load_settings(python=python)
    target = out or settings.models_dir() / "tiny-llama"
    if not as_json:
        out_console.print(f"building the tiny model into {target}")
    try:
        built = build_tiny_model(target, python=settings.vllm_python(), seed=seed, force=force)
    except ModelBuildError as exc:
        if exc.output:
            err_console.print(exc.output, markup=False, highlight=False)
        raise
    if as_json:
        emit_json({"model": str(built)})
    else:
        out_console.print(f"built: {built}  (farthing inference serve --model {built})")


@app.command()
def gateway(
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="The vLLM server's URL.")
    ] = None,
    pay_to: Annotated[
        str | None, typer.Option("--pay-to", help="Address the gateway is paid to.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Token address (read from the chain).")
    ] = None,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="Chain JSON-RPC URL.")] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Key that settles (local facilitator).")
    ] = None,
    facilitator_url: Annotated[
        str | None, typer.Option("--facilitator-url", help="A remote facilitator.")
    ] = None,
    facilitator_token_file: Annotated[Path | None, typer.Option("--facilitator-token-file")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records.")
    ] = None,
    ledger_database_url: Annotated[
        str | None, typer.Option("--ledger-database-url", help="Book revenue in this ledger.")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="Base of resource URLs; its host name is answered."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="Also answer this Host name (repeatable)."),
    ] = None,
    max_tokens_max: Annotated[int | None, typer.Option("--max-tokens-max", min=1)] = None,
    channel_authorizer_key_file: Annotated[
        Path | None,
        channel_authorizer_option(
            "Also sell per token through batch-settlement channels; this key signs claims."
        ),
    ] = None,
    channel_withdraw_delay_s: ChannelWithdrawDelayOpt = None,
    channel_min_deposit: ChannelMinDepositOpt = None,
    channel_claim_interval_s: ChannelClaimIntervalOpt = None,
    channel_claim_every_s: ChannelClaimEveryOpt = None,
    channel_claim_threshold: ChannelClaimThresholdOpt = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Farthing's data directory, whose paywall.sqlite holds the payments when no "
            "--database-url is given (env FARTHING_DATA_DIR, default ~/.farthing).",
            show_default=False,
        ),
    ] = None,
    free: Annotated[
        bool, typer.Option("--free", help="Serve without charging (a private node).")
    ] = False,
    mcp: Annotated[
        bool, typer.Option("--mcp", help="Also serve MCP at /mcp: the chat as a paid tool.")
    ] = False,
    upto: Annotated[
        bool,
        typer.Option(
            "--upto",
            help="Also sell through x402 upto: the quote is a signed ceiling and the real usage "
            "is settled on chain once (the facilitator must settle upto).",
        ),
    ] = False,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sell a vLLM server per chat completion, priced from compute cost, paid with x402."""
    settings = load_settings(
        upstream_url=upstream,
        pay_to=pay_to,
        gateway_host=host,
        gateway_port=port,
        max_tokens_max=max_tokens_max,
    )
    # Checked before the paywall (and its chain stack) is imported, so a
    # missing option fails in a blink.
    if not free and not settings.pay_to:
        fail("no payee: pass --pay-to ADDRESS (or --free to serve without charging)")
    if not free and (not rpc_url or not token):
        fail("the token is described by the chain: pass --rpc-url and --token")
    from farthing.errors import FarthingError
    from farthing.web import HostGuard, allowed_hosts

    # Only its own host names (DESIGN.md §13): the loopback names on a
    # loopback bind, the --public-url's host, and each --allowed-host.
    try:
        hosts = allowed_hosts(settings.gateway_host, [public_url], allowed_host or [])
    except FarthingError as exc:
        fail(str(exc))

    from farthing.inference.gateway import Gateway
    from farthing.paywall.facilitator.cli import bind_socket
    from farthing.paywall.site.channels import BackgroundClaims, ChannelSettings

    channel_settings = ChannelSettings().with_flags(
        receiver_authorizer_key_file=channel_authorizer_key_file,
        withdraw_delay_s=channel_withdraw_delay_s,
        min_deposit=channel_min_deposit,
        claim_interval_s=channel_claim_interval_s,
        claim_every_s=channel_claim_every_s,
        claim_threshold=channel_claim_threshold,
    )
    if free and channel_settings.given:
        fail("--free charges nothing: leave out the --channel-* options")
    if free and upto:
        fail("--free charges nothing: leave out --upto")
    payment = None
    claimer = None
    if not free:
        from farthing.inference.payment import gateway_payment

        payment, claimer = gateway_payment(
            settings,
            token=token,
            rpc_url=rpc_url,
            key_file=key_file,
            facilitator_url=facilitator_url,
            facilitator_token_file=facilitator_token_file,
            database_url=database_url,
            data_dir=data_dir,
            ledger_database_url=ledger_database_url,
            public_url=public_url,
            channels=channel_settings if channel_settings.given else None,
            upto=upto,
        )
    app_ = Gateway(settings, payment=payment)
    sock = bind_socket(settings.gateway_host, settings.gateway_port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host}:{bound_port}"
    network = payment.asset.network if payment is not None else None
    channels = None
    if payment is not None and payment.channels is not None:
        channels = {
            "receiver_authorizer": payment.channels.receiver_authorizer.address,
            "withdraw_delay_s": payment.channels.withdraw_delay_s,
        }
    if as_json:
        emit_json(
            {"url": url, "upstream": app_.upstream.url, "paid": payment is not None, "network": network,
             "pay_to": payment.pay_to if payment is not None else None, "channels": channels,
             "upto": payment is not None and payment.upto}
        )  # fmt: skip
    elif payment is None:
        out_console.print(
            f"gateway on {url} in front of {app_.upstream.url} (free: nothing is charged)"
        )
    else:
        out_console.print(
            f"gateway on {url} in front of {app_.upstream.url}, paid to {payment.pay_to} on {network}; "
            f"price: GET {url}/v1/price"
        )
        if channels is not None:
            out_console.print(
                "per-token metering through batch-settlement channels; receiver authorizer "
                f"{channels['receiver_authorizer']}, withdraw delay {channels['withdraw_delay_s']} s"
            )
        if payment.upto:
            out_console.print(
                "per-token metering through x402 upto: the quote is the signed ceiling, "
                "the usage is settled on chain"
            )
    # The gateway answers the lifespan itself, so the channel claimer runs beside it.
    mounted = app_.mcp_app() if mcp else app_  # /mcp beside the gateway (docs/mcp.md)
    served = mounted if claimer is None else BackgroundClaims(mounted, claimer)
    # The gateway's own ASGI signature is narrower than starlette's alias; it is an ASGI app.
    _serve(HostGuard(cast("ASGIApp", served), hosts=hosts), sock)
    if not as_json:
        out_console.print("gateway stopped")


def _serve(asgi_app: Any, sock: Any) -> None:
    import uvicorn

    config = uvicorn.Config(
        asgi_app,
        log_level="warning",
        access_log=False,
        lifespan="on",  # the gateway closes its upstream connections on shutdown
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it already handled with a graceful
        # shutdown; the stop was clean, so the exit code is 0.
        pass


@app.command()
def price(
    gateway_url: Annotated[
        str | None, typer.Option("--gateway", help="Ask a running gateway (GET /v1/price).")
    ] = None,
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="Read a vLLM server's /metrics directly.")
    ] = None,
    sample_s: Annotated[
        float,
        typer.Option("--sample-s", min=0, max=3600, help="Measure throughput over this long."),
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """The price per 1k tokens and every input behind it (cost, throughput, queue, margin)."""
    import anyio
    import httpx

    from farthing.inference.errors import InferenceError
    from farthing.inference.metrics import (
        MetricsSample,
        Throughput,
        ThroughputWindow,
        sample_metrics,
    )
    from farthing.inference.pricing import price_sheet
    from farthing.inference.upstream import Upstream

    settings = load_settings(upstream_url=upstream)
    if gateway_url is not None:
        try:
            response = httpx.get(
                gateway_url.rstrip("/") + "/v1/price",
                timeout=httpx.Timeout(
                    settings.metrics_timeout_s, connect=settings.connect_timeout_s
                ),
            )
            report: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            fail(f"the gateway at {gateway_url} did not answer a price: {exc}")
        if response.status_code != 200:
            fail(f"the gateway at {gateway_url} answered HTTP {response.status_code}")
    else:
        samples: list[MetricsSample] = []
        error: str | None = None
        if upstream is not None:

            async def read() -> None:
                client = Upstream(
                    settings.upstream_url,
                    timeout_s=settings.metrics_timeout_s,
                    connect_timeout_s=settings.connect_timeout_s,
                    quick_timeout_s=settings.metrics_timeout_s,
                )
                try:
                    for index in range(2 if sample_s > 0 else 1):
                        if index:
                            await anyio.sleep(sample_s)
                        text = await client.metrics()
                        samples.append(sample_metrics(text, at_ms=int(time.monotonic() * 1000)))
                finally:
                    await client.aclose()

            try:
                anyio.run(read)
            except InferenceError as exc:
                error = str(exc)
        window = ThroughputWindow(max(settings.metrics_window_s, int(sample_s) + 1))
        for sample in samples:
            window.add(sample)
        throughput = window.throughput() if samples else Throughput(0, 0)
        waiting = samples[-1].requests_waiting if samples else 0
        report = {
            **price_sheet(settings, throughput=throughput, requests_waiting=waiting).to_json(),
            "upstream": upstream,
            "max_tokens_max": settings.max_tokens_max,
            "metrics_error": error,
        }
    if as_json:
        emit_json(report)
        return
    out_console.print(
        f"price per 1k tokens: {report['price_per_1k']} ({report['price_per_1k_atomic']} atomic units)"
    )
    for key, value in report.items():
        if key not in ("price_per_1k", "price_per_1k_atomic") and value is not None:
            out_console.print(f"  {key}: {value}")
