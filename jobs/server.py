"""``farthing jobs serve``: the workers' page and its JSON API over one agent's :class:`JobService`.

A person opens ``/``: the open jobs (title, specification, criteria, the
price in their currency and in USDC, the deadline). They sign in with their
wallet (no password: a SIWE message signed through EIP-1193, see
:mod:`farthing.jobs.worker_auth`), accept a job (the agent's hold is placed
in escrow), deliver text or a URL, and once the agent has reviewed and
captured, the job's page shows what was paid and its transactions.

Worker agents do the same through the JSON API::

    GET  /api/jobs[?scope=open|mine]      the open jobs (or the signed-in worker's)
    GET  /api/jobs/{id}                   one job (its worker also sees delivery and pay)
    GET  /api/sign-in                     a SIWE challenge: {"info": …, "supportedChains": …}
    POST /api/sign-in                     the signed challenge → {"address", "token", "expiresAt"}
                                          (both 403 sign_in_off without a public URL)
    GET  /api/me                          who is signed in
    POST /api/jobs/{id}/accept            take the job (its hold is placed)
    POST /api/jobs/{id}/deliver           {"kind": "text"|"url"|"file", "content": "…"}

A session is the cookie the sign-in sets (HttpOnly, SameSite=Strict) or the
token it returns, sent as ``Authorization: Bearer``. Every refusal is JSON
``{"error": code, "message": one line}``: 401 ``not_signed_in``, 403
``not_the_worker``, 404 ``unknown_job``, 409 for a job in the wrong state,
400/413/415/422 for malformed input (a JSON body is bounded in size and
nesting before it is parsed, and its strings must be Unicode text), 405 for
other methods; never a traceback. The pages' forms carry a CSRF token derived from the session; an
API POST on a cookie session must be ``application/json`` (no cross-site
form can send that). Every answer carries a strict Content-Security-Policy:
the one script is ``/.jobs/jobs.js``, served from the package, with no CDN.

The Host header is never trusted (DESIGN.md §13): the server answers only its
own host names (``HostGuard``: the loopback names and the public URL's host by
default, 421 for any other), and the origin a sign-in message names comes only
from the configured public URL. Without one, sign-in is off: the page and the
API still show the open jobs, and both sign-in endpoints answer 403
``sign_in_off``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from importlib.resources import files
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from farthing.errors import FarthingError
from farthing.jobs.errors import JobNotFound
from farthing.jobs.lifecycle.result import JobResult
from farthing.jobs.service import JobService
from farthing.jobs.states import JobState
from farthing.jobs.store import JobView, list_jobs
from farthing.jobs.views import worker_view
from farthing.jobs.web_edge import (
    JOB_ID_MAX,
    SecurityHeaders,
    error,
    is_json,
    job_id_of,
    json_object,
    read_body,
)
from farthing.jobs.worker_auth import WorkerSession, WorkerSessions
from farthing.paywall.edge.page import network_label
from farthing.web import HostGuard, allowed_hosts

__all__ = [
    "COOKIE_NAME",
    "CSP",
    "SCRIPT_PATH",
    "SIGN_IN_OFF",
    "STYLE_PATH",
    "create_app",
    "public_origin",
    "status_of",
]

COOKIE_NAME: Final = "farthing_jobs_session"
SCRIPT_PATH: Final = "/.jobs/jobs.js"
STYLE_PATH: Final = "/.jobs/jobs.css"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_ASSETS: Final = {
    SCRIPT_PATH: ("jobs.js", "text/javascript; charset=utf-8"),
    STYLE_PATH: ("jobs.css", "text/css; charset=utf-8"),
}
_JOBS_SHOWN_MAX: Final = 200
_SIGN_IN_BYTES_MAX: Final = 8 * 1024
_FORM_FIELDS_MAX: Final = 10
SIGN_IN_OFF: Final = (
    "sign-in is off: this server has no public URL to name in sign-in messages "
    "(start it with farthing jobs serve --public-url URL)"
)
_DELIVERY_KINDS: Final = ("text", "url", "file")

# A refusal's HTTP status, by the service's reason; anything else is a 409.
_STATUS: Final[dict[str, int]] = {
    "not_the_worker": 403,
    "invalid_worker": 403,
    "payee_denied": 403,
    "payee_not_allowed": 403,
    "empty_delivery": 422,
    "delivery_too_long": 422,
    "invalid_delivery_kind": 422,
    "invalid_delivery_url": 422,
}


def status_of(result: JobResult) -> int:
    """The HTTP status for a refused step: 403 for who, 422 for what, 409 for when, 503 if in flight."""
    if result.tx_hash is not None:
        return 503  # sent and not confirmed: the agent reconciles, the worker tries later
    return _STATUS.get(result.reason or "", 409)


def public_origin(url: str) -> str:
    """``scheme://host[:port]/`` of a public URL; ValueError unless it is a plain http(s) URL."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"the public URL {url!r} has a bad port") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
    ):
        raise ValueError(f"the public URL must be an http(s) URL with a host, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}/"


def create_app(
    service: JobService,
    *,
    sessions: WorkerSessions | None = None,
    public_url: str | None = None,
    hosts: Iterable[str] | None = None,
) -> FastAPI:
    """The workers' app over ``service``.

    ``public_url`` is the site as workers reach it: sign-in messages name it,
    and without it sign-in is off (the Host header is never trusted).
    ``hosts`` are the only host names answered (default: the loopback names
    and the public URL's host; see :func:`farthing.web.allowed_hosts`).
    """
    sessions = sessions or WorkerSessions.ephemeral()
    public_url = None if public_url is None else public_origin(public_url)
    hosts = allowed_hosts("127.0.0.1", [public_url]) if hosts is None else frozenset(hosts)
    asset = service.asset
    network = service.chain.network
    # One step at a time: the chain client and the job rows change together.
    step_lock = threading.Lock()
    body_bytes_max = service.settings.delivery_chars_max * 4 + 4096
    env = Environment(
        loader=PackageLoader("farthing.jobs", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    shown = {"network": network_label(network), "asset": asset.symbol}

    app = FastAPI(title="Farthing jobs", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.sessions = sessions
    # An agent in this same process (a test, a demo) takes it around its own steps.
    app.state.step_lock = step_lock

    # ------------------------------------------------------------ plumbing

    def viewer_of(request: Request) -> tuple[WorkerSession | None, bool]:
        """The session and whether it came as a bearer token (not the cookie)."""
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return sessions.check(token.strip()), True
        return sessions.check(request.cookies.get(COOKIE_NAME)), False

    def now_s() -> int:
        with step_lock:
            return service.chain.timestamp()

    def read_job(job_id: int) -> JobView | None:
        if job_id > JOB_ID_MAX:
            return None
        try:
            job = service.get(job_id)
        except JobNotFound:
            return None
        return job if job.agent_id == service.books.agent_id else None

    def jobs_of(*, state: str | None = None, worker: str | None = None) -> list[JobView]:
        with service.database.read() as session:
            return list_jobs(
                session,
                agent_id=service.books.agent_id,
                state=state,
                worker=worker,
                limit=_JOBS_SHOWN_MAX,
            )

    def open_jobs(now: int) -> list[JobView]:
        return [job for job in jobs_of(state=str(JobState.OPEN)) if now < job.deadline]

    def step(call: Callable[[], JobResult]) -> JobResult:
        with step_lock:
            return call()

    def render(
        name: str, viewer: WorkerSession | None, status: int = 200, **context: Any
    ) -> Response:
        html = env.get_template(name).render(
            viewer=viewer,
            csrf=None if viewer is None else sessions.csrf(viewer),
            shown=shown,
            sign_in_off=None if public_url is not None else SIGN_IN_OFF,
            script_path=SCRIPT_PATH,
            style_path=STYLE_PATH,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def problem(viewer: WorkerSession | None, status: int, message: str) -> Response:
        return render("problem.html", viewer, status=status, message=message)

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = {
            404: "there is nothing at this path",
            405: f"{request.method} is not allowed here",
        }.get(exc.status_code, "the request cannot be served")
        headers = dict(exc.headers or {})
        if is_api(request):
            return error(exc.status_code, code, message, **headers)
        return Response(message + "\n", exc.status_code, headers, media_type="text/plain")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error(400, "bad_request", "a path or query value is not valid here")

    @app.exception_handler(FarthingError)
    async def unavailable(request: Request, exc: FarthingError) -> Response:
        # The books or the chain cannot answer now; the worker tries again later.
        message = f"the jobs service cannot answer now: {type(exc).__name__}"
        if is_api(request):
            return error(503, "unavailable", message)
        return Response(message + "\n", 503, media_type="text/plain")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        # A bug, never an answer by design: still JSON on the API, and still logged.
        if is_api(request):
            return error(500, "internal_error", "the jobs service failed on this request")
        return Response("the jobs service failed on this request\n", 500, media_type="text/plain")

    # ------------------------------------------------------------ assets

    async def asset_file(request: Request) -> Response:
        name, media_type = _ASSETS[request.url.path]
        body = files("farthing.jobs").joinpath("static", name).read_bytes()
        return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})

    for path in _ASSETS:
        app.add_api_route(path, asset_file, methods=["GET"], include_in_schema=False)

    # ------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        viewer, _ = viewer_of(request)
        now = await run_in_threadpool(now_s)
        found = await run_in_threadpool(open_jobs, now)
        mine = (
            await run_in_threadpool(lambda: jobs_of(worker=viewer.address))
            if viewer is not None
            else []
        )
        return render(
            "index.html",
            viewer,
            open_jobs=[worker_view(j, asset, None, now_s=now) for j in found],
            my_jobs=[worker_view(j, asset, viewer.address if viewer else None, now_s=now)
                     for j in mine],
        )  # fmt: skip

    def job_page(
        job: JobView,
        viewer: WorkerSession | None,
        now: int,
        *,
        status: int = 200,
        notice: str | None = None,
    ) -> Response:
        view = worker_view(job, asset, viewer.address if viewer else None, now_s=now)
        return render(
            "job.html",
            viewer,
            status=status,
            job=view,
            notice=notice,
            can_accept=viewer is not None and view["open"],
            can_deliver=view["yours"] and job.state is JobState.ACCEPTED,
        )

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_html(request: Request, job_id: str) -> Response:
        viewer, _ = viewer_of(request)
        number = job_id_of(job_id)
        job = None if number is None else await run_in_threadpool(read_job, number)
        if job is None:
            return problem(viewer, 404, f"there is no job {job_id[:20]}")
        return job_page(job, viewer, await run_in_threadpool(now_s))

    async def form_of(request: Request, limit: int) -> dict[str, str] | None:
        body = await read_body(request, limit)
        if body is None:
            return None
        try:
            parsed = parse_qs(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=_FORM_FIELDS_MAX
            )
        except (UnicodeDecodeError, ValueError):
            return {}
        return {key: values[0] for key, values in parsed.items()}

    FormStep = Callable[[JobView, WorkerSession, dict[str, str]], JobResult | str]

    async def form_action(request: Request, job_id: str, act: FormStep) -> Response:
        viewer, _ = viewer_of(request)
        form = await form_of(request, body_bytes_max)
        if form is None:
            return problem(viewer, 413, "the form is too large")
        if not sessions.csrf_ok(viewer, form.get("csrf_token")):
            return problem(
                viewer, 403, "refused: sign in, then send the form from this site's own page"
            )
        assert viewer is not None  # csrf_ok is False without a session
        number = job_id_of(job_id)
        job = None if number is None else await run_in_threadpool(read_job, number)
        if job is None:
            return problem(viewer, 404, f"there is no job {job_id[:20]}")
        outcome = await run_in_threadpool(act, job, viewer, form)
        if isinstance(outcome, str):
            return job_page(job, viewer, await run_in_threadpool(now_s), status=422, notice=outcome)
        if not outcome.ok:
            fresh = outcome.job or job
            return job_page(
                fresh,
                viewer,
                await run_in_threadpool(now_s),
                status=status_of(outcome),
                notice=outcome.message,
            )
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    @app.post("/jobs/{job_id}/accept")
    async def accept_form(request: Request, job_id: str) -> Response:
        return await form_action(
            request,
            job_id,
            lambda job, viewer, _: step(lambda: service.accept(job.id, viewer.address)),
        )

    @app.post("/jobs/{job_id}/deliver")
    async def deliver_form(request: Request, job_id: str) -> Response:
        def act(job: JobView, viewer: WorkerSession, form: dict[str, str]) -> JobResult | str:
            kind = form.get("kind", "text")
            if kind not in _DELIVERY_KINDS:
                return "a delivery is text, a URL or a file reference"
            content = form.get("content", "")
            return step(lambda: service.deliver(job.id, viewer.address, content, kind=kind))

        return await form_action(request, job_id, act)

    @app.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        viewer, _ = viewer_of(request)
        form = await form_of(request, 4096)
        if not sessions.csrf_ok(viewer, (form or {}).get("csrf_token")):
            return problem(viewer, 403, "refused: send the form from this site's own page")
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------ JSON API

    def not_signed_in() -> JSONResponse:
        return error(
            401,
            "not_signed_in",
            "sign in with your wallet first (GET then POST /api/sign-in)",
            **{"www-authenticate": 'Bearer realm="farthing jobs"'},
        )

    @app.get("/api/jobs")
    async def api_jobs(request: Request, scope: str = "open") -> Response:
        viewer, _ = viewer_of(request)
        if scope not in ("open", "mine"):
            return error(400, "invalid_scope", "scope is open or mine")
        now = await run_in_threadpool(now_s)
        if scope == "mine":
            if viewer is None:
                return not_signed_in()
            found = await run_in_threadpool(lambda: jobs_of(worker=viewer.address))
        else:
            found = await run_in_threadpool(open_jobs, now)
        address = viewer.address if viewer else None
        return JSONResponse({"jobs": [worker_view(j, asset, address, now_s=now) for j in found]})

    @app.get("/api/jobs/{job_id}")
    async def api_job(request: Request, job_id: str) -> Response:
        viewer, _ = viewer_of(request)
        number = job_id_of(job_id)
        if number is None:
            return error(400, "invalid_job_id", "a job id is a positive integer")
        job = await run_in_threadpool(read_job, number)
        if job is None:
            return error(404, "unknown_job", f"there is no job {number}")
        now = await run_in_threadpool(now_s)
        return JSONResponse(worker_view(job, asset, viewer.address if viewer else None, now_s=now))

    @app.get("/api/sign-in")
    async def api_challenge(request: Request) -> Response:
        if public_url is None:
            return error(403, "sign_in_off", SIGN_IN_OFF)
        return JSONResponse(
            sessions.challenge(public_url, network), headers={"cache-control": "no-store"}
        )

    @app.post("/api/sign-in")
    async def api_sign_in(request: Request) -> Response:
        if public_url is None:
            return error(403, "sign_in_off", SIGN_IN_OFF)
        body = await read_body(request, _SIGN_IN_BYTES_MAX)
        if body is None:
            return error(413, "body_too_large", "a sign-in is a few hundred bytes of JSON")
        if not is_json(request):
            return error(415, "json_required", "send the signed sign-in as application/json")
        payload = json_object(body, bytes_max=_SIGN_IN_BYTES_MAX)
        if isinstance(payload, JSONResponse):
            return payload
        if not payload:
            return error(400, "malformed_body", "the body is not a JSON object of the sign-in")
        outcome = sessions.sign_in(payload, site_url=public_url, network=network)
        if isinstance(outcome, tuple):
            reason, message = outcome
            status = 422 if reason in ("invalid_siwx_header", "invalid_siwx_statement") else 401
            return error(status, reason, message)
        response = JSONResponse(
            {"address": outcome.address, "token": outcome.token, "expiresAt": outcome.expires_at_s},
            headers={"cache-control": "no-store"},
        )
        response.set_cookie(
            COOKIE_NAME,
            outcome.token,
            max_age=sessions.lifetime_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=public_url.startswith("https://"),
        )
        return response

    @app.get("/api/me")
    async def api_me(request: Request) -> Response:
        viewer, _ = viewer_of(request)
        if viewer is None:
            return not_signed_in()
        return JSONResponse({"address": viewer.address, "expiresAt": viewer.expires_at_s})

    ApiStep = Callable[[JobView, WorkerSession, dict[str, Any]], JobResult | JSONResponse]

    async def api_action(request: Request, job_id: str, act: ApiStep) -> Response:
        viewer, bearer = viewer_of(request)
        if viewer is None:
            return not_signed_in()
        body = await read_body(request, body_bytes_max)
        if body is None:
            return error(413, "body_too_large", "the body is larger than a delivery may be")
        if not bearer and not is_json(request):
            # A cookie session: only this site's own script can send JSON (no CSRF by form).
            return error(415, "json_required", "send application/json")
        payload = json_object(body, bytes_max=body_bytes_max)
        if isinstance(payload, JSONResponse):
            return payload
        number = job_id_of(job_id)
        if number is None:
            return error(400, "invalid_job_id", "a job id is a positive integer")
        job = await run_in_threadpool(read_job, number)
        if job is None:
            return error(404, "unknown_job", f"there is no job {number}")
        outcome = await run_in_threadpool(act, job, viewer, payload)
        if isinstance(outcome, JSONResponse):
            return outcome
        now = await run_in_threadpool(now_s)
        shown_job = outcome.job or job
        if not outcome.ok:
            reason = outcome.reason or "refused"
            return JSONResponse(
                {
                    "error": reason,
                    "message": outcome.message or reason,
                    "txHash": outcome.tx_hash,
                    "job": worker_view(shown_job, asset, viewer.address, now_s=now),
                },
                status_code=status_of(outcome),
            )
        return JSONResponse(
            {
                "ok": True,
                "txHash": outcome.tx_hash,
                "job": worker_view(shown_job, asset, viewer.address, now_s=now),
            }
        )

    @app.post("/api/jobs/{job_id}/accept")
    async def api_accept(request: Request, job_id: str) -> Response:
        def act(
            job: JobView, viewer: WorkerSession, body: dict[str, Any]
        ) -> JobResult | JSONResponse:
            if body:
                return error(422, "unexpected_fields", "accept takes no fields")
            return step(lambda: service.accept(job.id, viewer.address))

        return await api_action(request, job_id, act)

    @app.post("/api/jobs/{job_id}/deliver")
    async def api_deliver(request: Request, job_id: str) -> Response:
        def act(
            job: JobView, viewer: WorkerSession, body: dict[str, Any]
        ) -> JobResult | JSONResponse:
            kind, content = body.get("kind", "text"), body.get("content")
            extra = set(body) - {"kind", "content"}
            if extra:
                return error(
                    422, "unexpected_fields", f"unknown field(s): {', '.join(sorted(extra))[:200]}"
                )
            if kind not in _DELIVERY_KINDS:
                return error(422, "invalid_delivery_kind", "kind is text, url or file")
            if not isinstance(content, str):
                return error(422, "invalid_delivery", "content is the delivery, as a string")
            return step(lambda: service.deliver(job.id, viewer.address, content, kind=kind))

        return await api_action(request, job_id, act)

    # Added last, runs first: the strict headers wrap even the guard's 421.
    app.add_middleware(HostGuard, hosts=hosts)
    app.add_middleware(SecurityHeaders, csp=CSP)
    return app
