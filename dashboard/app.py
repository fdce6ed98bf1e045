"""The dashboard's FastAPI app: server-rendered pages, CSV/JSON exports, a live feed.

``create_app(settings)`` validates the settings first: binding anywhere but
loopback without credentials is refused, so a dashboard that can approve
payments is never open to a network, and so is a bind beyond loopback with
no public URL. Then every request goes through the same gate:

1. its ``Host`` must be one of ours (``farthing.dashboard.edge.hosts_of``),
   or it is refused (421): a DNS-rebound page never reaches a page or form;
2. a session cookie (HttpOnly, SameSite=Strict) is looked up. Only a login
   makes a session; on loopback without credentials every local browser
   shares the local operator's one session. Anonymous visitors get none;
3. a POST must carry that session's CSRF token, or it is refused (403)
   before anything else is looked at (the login form's token is stateless,
   see ``farthing.dashboard.logins``);
4. when login is required (credentials are configured, or the bind is not
   loopback) a visitor without a session sees only the login page;
5. approving, denying and reconciling need the ``approver`` role.

Every response carries a strict Content-Security-Policy: script, style and
images come from this server only, and nothing inline runs. Pages never
render a secret: database and RPC URLs are shown without passwords, paths
or queries, and password hashes are never shown at all.
"""

from __future__ import annotations

import dataclasses
import getpass
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import create_engine, select
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from farthing.agents.approvals import list_approvals
from farthing.agents.tables import ensure_tables
from farthing.dashboard.actions import decide, record_action
from farthing.dashboard.agent import agent_page
from farthing.dashboard.audit_log import audit_log_response
from farthing.dashboard.auth import Session, SessionStore, authenticate, csrf_ok, load_users
from farthing.dashboard.channels import channel_tables
from farthing.dashboard.charts import bar_chart, burn_down_chart
from farthing.dashboard.edge import CSP, SecurityHeaders, hosts_of, read_form
from farthing.dashboard.errors import DashboardConfigError
from farthing.dashboard.integrity import Verifier
from farthing.dashboard.listing import Listing, Money
from farthing.dashboard.logins import LoginForms, LoginLimiter
from farthing.dashboard.overview import (
    agent_spend,
    burn_down,
    midnight_ns,
    money_of,
    payments_per_minute,
    paywall_revenue,
    revenue_by_resource,
    revenue_listing,
    spend_listing,
)
from farthing.dashboard.present import limit_text, no_limit_chart, problem_text
from farthing.dashboard.runs import Reconciler, ensure_runs_table, last_run
from farthing.dashboard.settings import DashboardSettings
from farthing.ledger.database import LedgerDatabase, normalise_database_url
from farthing.ledger.errors import LedgerError
from farthing.ledger.ids import display_subject
from farthing.ledger.settings import LedgerSettings
from farthing.ledger.tables import AuditEntry, table_of
from farthing.web import HostGuard

__all__ = ["COOKIE_NAME", "CSP", "LOGIN_COOKIE_NAME", "create_app"]

COOKIE_NAME = "farthing_dashboard"
LOGIN_COOKIE_NAME = "farthing_dashboard_login"
_NOTE_MAX = 500
_entries = table_of(AuditEntry)


def safe_url(url: str | None) -> str:
    """A URL with what identifies the place and nothing that could be a secret."""
    if url is None:
        return "-"
    try:
        parsed = (
            normalise_database_url(url) if "://" in url and not url.startswith("http") else None
        )
    except LedgerError:
        parsed = None
    if parsed is not None:
        if parsed.get_backend_name() == "sqlite":
            return f"sqlite:///{parsed.database}"
        return str(parsed.set(password=None, query={}).render_as_string(hide_password=True))
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def create_app(
    settings: DashboardSettings,
    *,
    clock: Callable[[], int] = time.time_ns,
    start_verifier: bool = True,
) -> FastAPI:
    """The dashboard app over ``settings.database_url``; raises ``DashboardConfigError`` on bad settings."""
    users = load_users(settings)
    login_required = bool(users) or not settings.loopback
    if not settings.loopback and not users:
        raise DashboardConfigError(
            f"binding {settings.host} needs a login: set FARTHING_DASHBOARD_USERS or "
            "--users-file (make entries with `farthing dashboard --hash-password`)"
        )
    hosts = hosts_of(settings)
    database = LedgerDatabase(LedgerSettings(database_url=settings.database_url), must_exist=True)
    ensure_tables(database)
    ensure_runs_table(database)
    # The merchant's own books, when it keeps them apart (as `farthing demo` does).
    merchant = database
    if settings.merchant_database_url is not None:
        merchant = LedgerDatabase(
            LedgerSettings(database_url=settings.merchant_database_url), must_exist=True
        )
    paywall_engine = None
    if settings.paywall_database_url is not None:
        paywall_engine = create_engine(normalise_database_url(settings.paywall_database_url))
    verifier = Verifier(database, interval_s=settings.verify_interval_s)
    reconciler = Reconciler(database, settings)
    sessions = SessionStore(ttl_s=settings.session_ttl_s, count_max=settings.session_count_max)
    login_forms = LoginForms()
    limiter = LoginLimiter(attempts_max=settings.login_attempts_per_minute_max)
    https_only = (settings.public_url or "").lower().startswith("https:")
    local_actor = f"local:{getpass.getuser()}"
    env = Environment(
        loader=PackageLoader("farthing.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["subject"] = display_subject
    env.filters["problem"] = problem_text
    shown = {
        "database": safe_url(settings.database_url),
        "paywall_database": safe_url(settings.paywall_database_url),
        "chain": safe_url(settings.rpc_url) if settings.rpc_url else (settings.network or "-"),
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if start_verifier:
            verifier.start()
        try:
            yield
        finally:
            verifier.stop()
            database.dispose()
            if merchant is not database:
                merchant.dispose()
            if paywall_engine is not None:
                paywall_engine.dispose()

    app = FastAPI(title="Farthing dashboard", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)  # fmt: skip
    app.state.database = database
    app.state.verifier = verifier
    app.state.sessions = sessions
    from importlib.resources import files

    app.mount("/static", StaticFiles(directory=str(files("farthing.dashboard") / "static")),
              name="static")  # fmt: skip

    # ------------------------------------------------------------ plumbing

    local: list[Session] = []  # on loopback without credentials: the operator's one session

    def session_of(request: Request) -> tuple[Session | None, bool]:
        """The request's session and whether its cookie must be set; never one per visitor."""
        found = sessions.get(request.cookies.get(COOKIE_NAME))
        if found is not None or login_required:
            return found, False
        if not local or sessions.get(local[0].token) is None:
            local[:] = [sessions.new(user=local_actor, role="approver")]
        return local[0], True

    def secure(request: Request) -> bool:
        return https_only or request.url.scheme == "https"

    def with_cookie(
        response: Response, session: Session, fresh: bool, request: Request
    ) -> Response:
        if fresh:
            response.set_cookie(
                COOKIE_NAME, session.token, httponly=True, samesite="strict", path="/",
                max_age=settings.session_ttl_s, secure=secure(request),
            )  # fmt: skip
        return response

    def render(name: str, session: Session, status: int = 200, **context: Any) -> HTMLResponse:
        template = env.get_template(name)
        html = template.render(
            session=session, csrf=session.csrf, login_required=login_required, shown=shown,
            refresh_ms=int(settings.refresh_s * 1000), **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def problem(session: Session, status: int, message: str) -> HTMLResponse:
        return render("problem.html", session, status=status, message=message)

    too_large = "refused: the form is over 16 KiB"

    Handler = Callable[[Request, Session], Awaitable[Response]]

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            session, fresh = session_of(request)
            if session is None or session.user is None:
                return RedirectResponse(f"/login?next={request.url.path}", 303)
            try:
                response = await handler(request, session)
            except LedgerError as exc:
                response = problem(session, 503, str(exc))
            return with_cookie(response, session, fresh, request)

        return wrapped

    def action(
        handler: Handler, *, role: str | None = "approver"
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE_NAME))
            form = await read_form(request)
            if form is None:
                return PlainOrHtml(413, too_large)
            if not csrf_ok(session, form.get("csrf_token")):
                return PlainOrHtml(403, "refused: the form's CSRF token is missing or wrong; "
                                   "reload the page and try again")  # fmt: skip
            assert session is not None  # csrf_ok is False without one
            if login_required and session.user is None:
                return RedirectResponse("/login", 303)
            if role == "approver" and not session.may_decide():
                return problem(session, 403, f"{session.user} is a viewer: approving, denying "
                               "and reconciling need the approver role")  # fmt: skip
            request.state.form = form
            try:
                return await handler(request, session)
            except LedgerError as exc:
                return problem(session, 503, str(exc))

        return wrapped

    def PlainOrHtml(status: int, message: str) -> Response:
        return Response(message + "\n", status_code=status, media_type="text/plain")

    def export(listing: Listing, fmt: str) -> Response:
        if fmt == "csv":
            return Response(listing.to_csv(), media_type="text/csv", headers={
                "content-disposition": f'attachment; filename="{listing.name}.csv"'})  # fmt: skip
        return Response(listing.to_json(), media_type="application/json", headers={
            "content-disposition": f'attachment; filename="{listing.name}.json"'})  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        return PlainOrHtml(400, "bad request: a path or query value is not valid here")

    # ------------------------------------------------------------ figures

    def overview_data(want: frozenset[str] = frozenset({"all"})) -> dict[str, Any]:
        """The overview's figures; an export asks only for the one table it sends."""
        every = "all" in want
        now = clock()
        data: dict[str, Any] = {"now": now}
        with database.read() as session:
            money = data["money"] = money_of(session)
            if every or "spend" in want:
                data["spend"] = agent_spend(session, now)
                data["spend_listing"] = spend_listing(data["spend"], money)
            if every:
                data["burn"] = burn_down(session, now)
            if every or "per_minute" in want:
                data["per_minute"] = payments_per_minute(session, now)
        if every or "revenue" in want:
            with merchant.read() as session:
                revenue = revenue_by_resource(session, midnight_ns(now))
                data["revenue_listing"] = revenue_listing(
                    revenue, money if merchant is database else money_of(session), "revenue",
                    "Revenue per site and article today (merchant books)",
                )  # fmt: skip
        data["paywall_listing"], data["paywall_error"] = None, None
        if paywall_engine is not None and (every or "paywall_revenue" in want):
            try:
                paywall = paywall_revenue(paywall_engine, midnight_ns(now))
                data["paywall_listing"] = revenue_listing(
                    paywall, money, "paywall_revenue",
                    "Revenue per site and article today (paywall payments)",
                )  # fmt: skip
            except DBAPIError:
                # Revenue from the paywall is one panel; the books still show.
                data["paywall_error"] = (
                    f"cannot read the paywall database at {shown['paywall_database']}"
                )
        if every:
            data["approvals"] = list_approvals(
                database, status="pending", limit=settings.table_rows_max
            )
            data["run"] = last_run(database)
            data["audit"] = verifier.state
            default = next(iter(money.values()), Money())
            burn = data["burn"]
            data["burn_money"] = (
                money.get(burn.ledger, default) if burn.ledger is not None else default
            )
        return data

    def live_figures(data: dict[str, Any]) -> dict[str, Any]:
        spend = data["spend"]
        burn = data["burn"]
        audit = data["audit"]
        run = data["run"]
        return {
            "figures": {
                "agents": str(len(spend)),
                "spent_today": data["burn_money"].format(burn.spent_today),
                "limit_today": limit_text(data["burn_money"], burn.limit_total,
                                          has_limit=burn.has_limit),
                "payments_last_hour": str(sum(data["per_minute"])),
                "payments_last_minute": str(data["per_minute"][-1]),
                "open_approvals": str(len(data["approvals"])),
                "breaks": "-" if run is None else str(run.break_count),
                "audit_status": audit.status,
            },
            "charts": {
                "per_minute": str(bar_chart(data["per_minute"], title="Payments per minute, last hour",
                                            first_label="-60 min", last_label="now")),
                "burn_down": str(burn_down_chart(burn.used_by_hour, burn.limit_total,
                                                 title="What is left of today's daily limits")
                                 if burn.has_limit else no_limit_chart("No agent has a")),
            },
        }  # fmt: skip

    # ------------------------------------------------------------ pages

    async def overview(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(overview_data)
        live = live_figures(data)
        return render("overview.html", session, live=live, rows_max=settings.table_rows_max, **data)

    async def live(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(overview_data)
        return JSONResponse(live_figures(data))

    async def overview_export(request: Request, session: Session) -> Response:
        table, fmt = request.path_params["table"], request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            return problem(session, 404, "exports are .csv or .json")
        if table.startswith("agent-"):
            found = await run_in_threadpool(agent_data, request.query_params.get("agent", ""))
            if found is None:
                return problem(session, 404, "there is no such agent in these books")
            listings = {f"agent-{l.name}": l for l in (found.payments, found.limits,
                        found.unresolved, found.tasks, found.channels,
                        found.channel_transactions)}  # fmt: skip
            if table not in listings:
                return problem(session, 404, f"there is no table {table!r}")
            return export(listings[table], fmt)
        if table in ("spend", "revenue", "paywall_revenue", "per_minute"):
            data = await run_in_threadpool(overview_data, frozenset({table}))
            if table == "per_minute":
                listing = Listing("per_minute", "Payments per minute", ("minutes_ago", "payments"),
                                  [{"minutes_ago": str(len(data["per_minute"]) - 1 - i), "payments": str(c)}
                                   for i, c in enumerate(data["per_minute"])])  # fmt: skip
            elif table == "spend":
                listing = data["spend_listing"]
            elif table == "revenue":
                listing = data["revenue_listing"]
            elif data["paywall_listing"] is None:
                return problem(session, 404, "start the dashboard with --paywall-database-url")
            else:
                listing = data["paywall_listing"]
            return export(listing, fmt)
        if table == "approvals":
            return export(approvals_listing(await run_in_threadpool(
                list_approvals, database, limit=settings.export_rows_max)), fmt)  # fmt: skip
        if table == "breaks":
            run = await run_in_threadpool(last_run, database)
            return export(breaks_listing(run), fmt)
        if table == "audit":
            return await audit_log_export(fmt)
        return problem(session, 404, f"there is no table {table!r}")

    def agent_data(agent_id: str) -> Any:
        with database.read() as session:
            found = agent_page(session, agent_id=agent_id, now_ns=clock(), money=money_of(session),
                               limit=settings.table_rows_max)  # fmt: skip
        if found is None:
            return None
        # The agents package's own query functions open their own sessions.
        tables = channel_tables(database, agent_id=agent_id, ledger=found.spend.ledger,
                                money=found.money, limit=settings.table_rows_max)  # fmt: skip
        return dataclasses.replace(found, channels=tables.channels,
                                   channel_transactions=tables.transactions,
                                   in_escrow_total=tables.in_escrow_total)  # fmt: skip

    async def agents(request: Request, session: Session) -> Response:
        return RedirectResponse("/#table-spend", 303)  # the overview lists every agent

    async def agent(request: Request, session: Session) -> Response:
        agent_id = request.path_params["agent_id"]
        found = await run_in_threadpool(agent_data, agent_id)
        if found is None:
            return problem(session, 404, "there is no such agent in these books")
        now = clock()

        def burn_for() -> Any:
            with database.read() as s:
                return burn_down(s, now, account_id=found.spend.account_id)

        burn = await run_in_threadpool(burn_for)
        chart = (burn_down_chart(burn.used_by_hour, burn.limit_total,
                                 title=f"What is left of {agent_id}'s daily limit")
                 if burn.has_limit else no_limit_chart(f"{agent_id} has"))  # fmt: skip
        return render("agent.html", session, page=found, chart=chart)

    def approvals_listing(items: list[Any]) -> Listing:
        rows = [
            {
                "id": str(a.id), "agent": a.agent_id, "task": a.task_id or "-",
                "purpose": a.purpose or "-", "payee": a.pay_to, "resource": a.resource,
                "amount": a.price(), "status": a.status, "note": a.note or "-",
                "amount_atomic": str(a.amount), "created_ns": str(a.created_ns),
            }
            for a in items
        ]  # fmt: skip
        return Listing("approvals", "Approval requests",
                       ("id", "agent", "task", "purpose", "payee", "resource", "amount", "status",
                        "note", "amount_atomic", "created_ns"), rows,
                       ("amount_atomic", "created_ns"))  # fmt: skip

    async def approvals(request: Request, session: Session) -> Response:
        waiting = await run_in_threadpool(list_approvals, database, status="pending",
                                          limit=settings.table_rows_max)  # fmt: skip
        recent = await run_in_threadpool(list_approvals, database, limit=settings.table_rows_max)
        decided = [a for a in recent if a.status != "pending"]
        message = request.query_params.get("message")
        return render("approvals.html", session, waiting=waiting,
                      decided=approvals_listing(decided), message=message)  # fmt: skip

    async def approval_decision(request: Request, session: Session) -> Response:
        raw, verb = request.path_params["approval_id"], request.path_params["verb"]
        if verb not in ("approve", "deny") or not raw.isdigit() or len(raw) > 18:
            return problem(session, 400, "unknown approval or action")
        note = (request.state.form.get("note") or "")[:_NOTE_MAX]
        actor = session.user or local_actor
        outcome = await run_in_threadpool(lambda: decide(
            database, int(raw), approve=verb == "approve", note=note, actor=actor))  # fmt: skip
        if outcome.reason is not None:
            return problem(session, 409, outcome.reason)
        assert outcome.approval is not None
        return RedirectResponse(f"/approvals?message=request+{raw}+{outcome.approval.status}", 303)

    def breaks_listing(run: Any) -> Listing:
        rows = [] if run is None else [
            {k: (v or "-") for k, v in item.items()} for item in run.breaks
        ]  # fmt: skip
        return Listing("breaks", "Breaks of the last run",
                       ("kind", "transfer_id", "tx_hash", "ledger_amount", "chain_amount",
                        "resolution", "detail"), rows)  # fmt: skip

    async def reconciliation(request: Request, session: Session) -> Response:
        run = await run_in_threadpool(last_run, database)
        return render("reconciliation.html", session, run=run, breaks=breaks_listing(run),
                      configured=reconciler.configured,
                      message=request.query_params.get("message"))  # fmt: skip

    async def reconcile_now(request: Request, session: Session) -> Response:
        actor = session.user or local_actor
        run, why = await run_in_threadpool(lambda: reconciler.run(actor=actor))
        if why is not None:
            return problem(session, 409, why)
        assert run is not None
        return RedirectResponse(
            f"/reconciliation?message=run+{run.id}+found+{run.break_count}+breaks", 303
        )

    async def audit(request: Request, session: Session) -> Response:
        def latest() -> list[Any]:
            with database.read() as s:
                query = select(_entries).order_by(_entries.c.sequence.desc())
                return list(s.execute(query.limit(settings.table_rows_max)))

        entries = await run_in_threadpool(latest)
        head = await run_in_threadpool(verifier.head)
        return render("audit.html", session, state=verifier.state, head=head, entries=entries)

    async def audit_verify(request: Request, session: Session) -> Response:
        await run_in_threadpool(verifier.run_once)
        actor = session.user or local_actor
        state = verifier.state
        await run_in_threadpool(lambda: record_action(
            database, actor=actor, action="audit_verified", subject="audit",
            details={"status": state.status, "head_sequence": state.head_sequence}))  # fmt: skip
        return RedirectResponse("/audit", 303)

    async def audit_log_export(fmt: str) -> Response:
        return audit_log_response(database, fmt, settings.export_rows_max)

    # ------------------------------------------------------------ login

    def login_form(request: Request, value: str | None, status: int, error: str | None) -> Response:
        """The login page; its CSRF token is bound to a cookie, and nothing is stored."""
        fresh = value is None or not login_forms.usable(value)
        value = login_forms.new_value() if value is None or fresh else value
        anonymous = Session(token="", csrf=login_forms.token_for(value), expires_at=0.0)
        response = render("login.html", anonymous, status=status, error=error)
        if fresh:
            response.set_cookie(LOGIN_COOKIE_NAME, value, httponly=True, samesite="strict",
                                path="/login", secure=secure(request))  # fmt: skip
        return response

    async def login_page(request: Request) -> Response:
        if not login_required:
            return RedirectResponse("/", 303)
        return login_form(request, request.cookies.get(LOGIN_COOKIE_NAME), 200, None)

    async def login(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return PlainOrHtml(413, too_large)
        value = request.cookies.get(LOGIN_COOKIE_NAME)
        if not login_forms.ok(value, form.get("csrf_token")):
            return PlainOrHtml(403, "refused: the form's CSRF token is missing or wrong; "
                               "reload the page and try again")  # fmt: skip
        if not login_required:
            return RedirectResponse("/", 303)
        name, password = form.get("user", ""), form.get("password", "")
        # Counted before the check, with no await in between: concurrent guesses cannot race it.
        attempt = limiter.begin(name, request.client.host if request.client else "-")
        if attempt is None:
            return login_form(request, value, 429, "too many failed logins; wait a minute")
        user = await run_in_threadpool(authenticate, users, name, password)
        if user is None:
            return login_form(request, value, 401, "wrong user name or password")
        limiter.succeeded(attempt)
        sessions.drop(request.cookies.get(COOKIE_NAME) or "")
        fresh = sessions.new(user=user.name, role=user.role)
        await run_in_threadpool(lambda: record_action(
            database, actor=user.name, action="login", subject=f"user:{user.name}",
            details={"role": user.role}))  # fmt: skip
        response = with_cookie(RedirectResponse("/", 303), fresh, True, request)
        response.delete_cookie(LOGIN_COOKIE_NAME, path="/login")
        return response

    async def logout(request: Request, session: Session) -> Response:
        sessions.drop(session.token)
        response = RedirectResponse("/login" if login_required else "/", 303)
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    async def healthz(request: Request) -> Response:
        return PlainOrHtml(200, "ok")

    app.add_api_route("/", page(overview), methods=["GET"])
    app.add_api_route("/api/live", page(live), methods=["GET"])
    app.add_api_route("/export/{table}.{fmt}", page(overview_export), methods=["GET"])
    app.add_api_route("/agents", page(agents), methods=["GET"])
    app.add_api_route("/agents/", page(agents), methods=["GET"])
    app.add_api_route("/agents/{agent_id:path}", page(agent), methods=["GET"])
    app.add_api_route("/approvals", page(approvals), methods=["GET"])
    app.add_api_route(
        "/approvals/{approval_id}/{verb}", action(approval_decision), methods=["POST"]
    )
    app.add_api_route("/reconciliation", page(reconciliation), methods=["GET"])
    app.add_api_route("/reconciliation/run", action(reconcile_now), methods=["POST"])
    app.add_api_route("/audit", page(audit), methods=["GET"])
    app.add_api_route("/audit/verify", action(audit_verify, role=None), methods=["POST"])
    app.add_api_route("/login", login_page, methods=["GET"])
    app.add_api_route("/login", login, methods=["POST"])
    app.add_api_route("/logout", action(logout, role=None), methods=["POST"])
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_middleware(HostGuard, hosts=hosts)
    app.add_middleware(SecurityHeaders)
    return app
