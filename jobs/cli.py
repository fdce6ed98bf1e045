"""``farthing jobs``: post jobs, watch them, review deliveries, and capture, void, refund or reclaim.

::

    farthing jobs post --title T --spec TEXT --criteria TEXT --price "500 INR" --rate 0.0119 --deadline 3d
    farthing jobs list [--state STATE]
    farthing jobs show ID
    farthing jobs accept ID --worker ADDRESS          # the worker's step by hand (or `jobs serve`)
    farthing jobs deliver ID --worker ADDRESS (--text T | --url U | --file REF)
    farthing jobs review ID [--verdict accept|partial:0.5|reject] [--llm-url URL --model NAME] [--wait S]
    farthing jobs capture ID [--amount 1.5]
    farthing jobs void ID
    farthing jobs refund ID [--amount 0.5]
    farthing jobs reclaim ID                           # the payer's own, after the deadline
    farthing jobs reconcile [--from-block N]
    farthing jobs serve [--host H] [--port P] --public-url URL [--allowed-host NAME] [--json]
                                                       # the workers' page and API

The wallet, chain and books are the agent's (see ``farthing.agents.workspace``:
``~/.farthing``, the local dev chain, ``--network``/``--rpc-url``/``--token``).
The escrow's operator key is the keystore ``--operator-wallet`` (default: the
agent's own wallet). Every command takes ``--json`` (one line on stdout); a
refusal is one line on stderr and exit code 1. Keys are never printed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from farthing.console import emit_json, fail, out_console
from farthing.jobs.serve_cli import serve_command

__all__ = ["app"]

app = typer.Typer(
    help="Hire workers and pay on accepted delivery (x402 auth-capture escrow).",
    no_args_is_help=True,
    add_completion=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line for scripts.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Keys, dev-chain record and books (default ~/.farthing)."),
]
AgentOpt = Annotated[
    str | None, typer.Option("--agent-id", help="Whose jobs and budget (default: agent).")
]
WalletOpt = Annotated[
    str | None, typer.Option("--wallet", help="The payer's keystore name (default: default).")
]
OperatorOpt = Annotated[
    str | None,
    typer.Option("--operator-wallet", help="The escrow operator's keystore (default: --wallet)."),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the keystore passphrase."),
]
NetworkOpt = Annotated[
    str | None, typer.Option("--network", help="local, base-sepolia or base (default: local).")
]
RpcOpt = Annotated[
    str | None, typer.Option("--rpc-url", help="JSON-RPC URL (overrides the network's).")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Token address (overrides the network's).")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="The books: sqlite:///PATH or postgresql://...")
]
JobArg = Annotated[int, typer.Argument(help="The job's id.", min=1)]

_DURATION = re.compile(r"^(\d{1,9})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


_state: dict[str, Any] = {}


@app.callback()
def _common(
    data_dir: DataDirOpt = None,
    agent_id: AgentOpt = None,
    wallet: WalletOpt = None,
    operator_wallet: OperatorOpt = None,
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Hire workers and pay on accepted delivery (x402 auth-capture escrow)."""
    _state.clear()
    _state.update(
        data_dir=data_dir, agent_id=agent_id, wallet=wallet, operator_wallet=operator_wallet,
        passphrase_file=passphrase_file, network=network, rpc_url=rpc_url, token=token,
        database_url=database_url,
    )  # fmt: skip


def _open(*, with_wallet: bool = True, reviewer: Any = None) -> Any:
    """The agent's workspace and a JobService over it (the caller closes the workspace)."""
    from farthing.jobs.workspace import open_jobs

    return open_jobs(_state, with_wallet=with_wallet, reviewer=reviewer)


def _deadline(text: str, now: int) -> int:
    """``90m``, ``3d``, an ISO 8601 time (UTC if no zone) or unix seconds → unix seconds."""
    value = text.strip()
    match = _DURATION.match(value)
    if match:
        return now + int(match[1]) * _UNITS[match[2]]
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"cannot read the deadline {text!r} (write 3d, 12h, 90m, an ISO time or unix seconds)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _amount(service: Any, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(service.asset.parse(text))
    except Exception as exc:  # noqa: BLE001 - any unreadable amount is one line
        fail(f"cannot read the amount {text!r}: {exc}")


def _finish(service: Any, result: Any, as_json: bool, done: str) -> None:
    if as_json:
        emit_json(result.to_json())
    if not result.ok and result.reason != "awaiting_approval":
        fail(f"{result.reason}: {result.message}")
    if not as_json:
        out_console.print(result.message if result.reason else done)
        if result.job is not None:
            _print_job(result.job, service.asset)


def _print_job(job: Any, asset: Any) -> None:
    def usdc(value: int) -> str:
        return asset.format(value) if asset is not None else f"{value} atomic units"

    value = Decimal(job.price_amount).scaleb(-job.currency_decimals).normalize()
    price = f"{format(value, 'f')} {job.currency}"
    lines = [
        f"job {job.id}: {job.title} [{job.state}]",
        f"  price     {price} = {usdc(job.amount)} at {job.rate}",
        f"  deadline  {datetime.fromtimestamp(job.deadline, UTC).isoformat()}",
        f"  worker    {job.worker or '-'}",
        f"  held {usdc(job.held)} · captured {usdc(job.captured)} · refunded {usdc(job.refunded)}",
    ]
    if job.review is not None:
        verdict = job.review["verdict"]
        lines.append(
            f"  review    {verdict['decision']} ({verdict['fraction_bps']} bps): "
            + "; ".join(verdict["reasons"])
        )
    if job.approval_id is not None:
        lines.append(f"  approval  request {job.approval_id}")
    if job.note:
        lines.append(f"  note      {job.note}")
    out_console.print("\n".join(lines), markup=False)


def _with(step: Any, *, with_wallet: bool = True, reviewer: Any = None) -> Any:
    workspace, service = _open(with_wallet=with_wallet, reviewer=reviewer)
    try:
        return step(service)
    finally:
        workspace.close()


@app.command()
def post(
    title: Annotated[str, typer.Option("--title", help="A short title.")],
    spec: Annotated[str, typer.Option("--spec", help="What to do, in full.")],
    criteria: Annotated[str, typer.Option("--criteria", help="Acceptance criteria, one per line.")],
    price: Annotated[
        str, typer.Option("--price", help="In the worker's currency: '500 INR', '2 USDC'.")
    ],
    deadline: Annotated[
        str,
        typer.Option("--deadline", help="Capture deadline: 3d, 12h, 90m, an ISO time or unix s."),
    ],
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="USDC per one unit of the price's currency, e.g. 0.0119."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Post a job; refused when its hold would pass the agent's budget."""

    def step(service: Any) -> None:
        when = _deadline(deadline, service.chain.timestamp())
        result = service.post(
            title=title,
            specification=spec,
            criteria=criteria,
            price=price,
            rate=rate,
            deadline=when,
        )
        _finish(service, result, as_json, f"posted job {result.job.id if result.job else '?'}")

    _with(step)


@app.command("list")
def list_command(
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The agent's jobs, newest first."""
    from farthing.jobs.states import JobState

    if state is not None and state not in {s.value for s in JobState}:
        fail(f"unknown state {state!r} (one of {', '.join(s.value for s in JobState)})")

    def step(service: Any) -> None:
        jobs = service.list(state=state, limit=limit)
        if as_json:
            emit_json({"jobs": [job.to_json() for job in jobs]})
            return
        if not jobs:
            out_console.print("no jobs")
        for job in jobs:
            out_console.print(
                f"{job.id:>5}  {job.state:<17} {service.asset.format(job.amount):>16}  "
                f"{job.worker or '-':<42}  {job.title}",
                markup=False,
            )

    _with(step, with_wallet=False)


@app.command()
def show(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """One job: terms, worker, delivery, review, escrow and transactions."""

    def step(service: Any) -> None:
        job = service.get(job_id)
        if as_json:
            emit_json(job.to_json())
        else:
            _print_job(job, service.asset)
            if job.delivery is not None:
                out_console.print(
                    f"  delivery  ({job.delivery_kind}) {job.delivery[:500]}", markup=False
                )

    _with(step, with_wallet=False)


@app.command()
def accept(
    job_id: JobArg,
    worker: Annotated[str, typer.Option("--worker", help="The worker's wallet address.")],
    as_json: JsonOpt = False,
) -> None:
    """A worker takes the job: the hold is booked, signed and placed in escrow."""
    _with(
        lambda service: _finish(
            service, service.accept(job_id, worker), as_json, f"job {job_id} accepted"
        )
    )


@app.command()
def deliver(
    job_id: JobArg,
    worker: Annotated[str, typer.Option("--worker", help="The address that accepted the job.")],
    text: Annotated[str | None, typer.Option("--text", help="The work, as text.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="Where the work is.")] = None,
    file: Annotated[
        str | None, typer.Option("--file", help="A file reference (name or hash).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The worker hands in the work; only the worker who accepted may."""
    given = [
        (kind, value) for kind, value in (("text", text), ("url", url), ("file", file)) if value
    ]
    if len(given) != 1:
        fail("pass exactly one of --text, --url or --file")
    kind, content = given[0]
    _with(lambda s: _finish(s, s.deliver(job_id, worker, content, kind=kind), as_json, "delivered"))


def _verdict(text: str) -> Any:
    from farthing.jobs.review import BPS_WHOLE, ReviewVerdict

    word, _, fraction = text.partition(":")
    reason = "given on the command line"
    if word == "accept" and not fraction:
        return ReviewVerdict.accept(reason)
    if word == "reject" and not fraction:
        return ReviewVerdict.reject(reason)
    if word == "partial":
        try:
            bps = Decimal(fraction) * BPS_WHOLE
        except InvalidOperation:
            bps = Decimal(-1)
        if bps == bps.to_integral_value() and 0 < bps < BPS_WHOLE:
            return ReviewVerdict.partial(int(bps), reason)
    fail(f"cannot read the verdict {text!r} (accept, reject, or partial:0.25)")


@app.command()
def review(
    job_id: JobArg,
    verdict: Annotated[
        str | None,
        typer.Option("--verdict", help="Skip the model: accept, reject or partial:FRACTION."),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option("--llm-url", help="vLLM (OpenAI-compatible) base URL ending in /v1."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="The served model's name.")] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, max=86_400, help="Seconds to wait for a person's approval."),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Review the delivery (model, or the scripted rule), then pay or void as the policy decides.

    Above the approval threshold, or on a reject, a person decides with
    `farthing agent approvals approve|deny ID`; run this again afterwards.
    """
    from farthing.jobs.review import LlmReviewer, ScriptedReviewer

    if (llm_url is None) != (model is None):
        fail("pass --llm-url and --model together (or neither, for the scripted reviewer)")
    if verdict is not None and llm_url is not None:
        fail("pass --verdict or a model, not both")
    reviewer: Any
    if llm_url is not None and model is not None:
        from farthing.inference import InferenceSettings, chat_model

        reviewer = LlmReviewer(
            chat_model(llm_url, model=model, settings=InferenceSettings()), model_name=model
        )
    else:
        reviewer = ScriptedReviewer([_verdict(verdict)] if verdict else [])
    try:
        _with(
            lambda s: _finish(s, s.review(job_id, wait_s=wait), as_json, f"job {job_id} reviewed"),
            reviewer=reviewer,
        )
    finally:
        close = getattr(reviewer, "close", None)
        if callable(close):
            close()


@app.command()
def capture(
    job_id: JobArg,
    amount: Annotated[
        str | None, typer.Option("--amount", help="How much, in USDC (default: all that is held).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay the worker out of the hold, fully or in part (before the deadline)."""
    _with(lambda s: _finish(s, s.capture(job_id, _amount(s, amount)), as_json, "captured"))


@app.command()
def void(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Release what is still held back to the payer (an open job is withdrawn)."""
    _with(lambda s: _finish(s, s.void(job_id), as_json, "voided"))


@app.command()
def refund(
    job_id: JobArg,
    amount: Annotated[
        str | None,
        typer.Option("--amount", help="How much, in USDC (default: all still refundable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Return captured money to the payer (its liquidity comes from the operator)."""
    _with(lambda s: _finish(s, s.refund(job_id, _amount(s, amount)), as_json, "refunded"))


@app.command()
def reclaim(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """The payer takes back what is still held, after the deadline (resolved from the chain)."""
    _with(lambda s: _finish(s, s.reclaim(job_id), as_json, "reclaimed"))


@app.command()
def reconcile(
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from-block",
            min=0,
            help="First block to scan (default: the first block a job's payment was authorized in).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Escrow events against the job rows and the books; exit 1 while any break remains."""
    from farthing.jobs.reconcile import reconcile_jobs

    def step(service: Any) -> None:
        breaks = reconcile_jobs(
            service.database, service.escrow, agent_id=service.books.agent_id, from_block=from_block
        )
        if as_json:
            emit_json({"breaks": [b.to_json() for b in breaks], "count": len(breaks)})
        else:
            for b in breaks:
                out_console.print(f"job {b.job_id}: {b.kind}: {b.message}", markup=False)
            out_console.print(f"{len(breaks)} break(s)")
        if breaks:
            raise typer.Exit(1)

    _with(step, with_wallet=False)


# The workers' page and API: its own module (its edge options are many).
app.command("serve")(serve_command)
