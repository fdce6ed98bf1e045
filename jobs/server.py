"""``farthing jobs serve``: the workers' page and its JSON API over one agent's :class:`JobService`.

A person opens ``/``: the open jobs (title, specification, criteria, the
price in their currency and in USDC, the deadline). They sign in with their
wallet (no password: a SIWE message signed through EIP-1193, see
:mod:`farthing.jobs.worker_auth`), accept a job (the agent's hold is placed
in escrow), deliver text or a URL, and once the agent has reviewed and
captured, the job's page shows what was paid and its transactions.

Worker agents do the same through the JSON API (its routes are :mod:`farthing.jobs.api`;
what pages and API share is :mod:`farthing.jobs.site`)::

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

from collections.abc import Callable, Iterable
from importlib.resources import files
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from farthing.errors import FarthingError
from farthing.jobs.api import add_api
from farthing.jobs.lifecycle.result import JobResult
from farthing.jobs.service import JobService
from farthing.jobs.site import COOKIE_NAME, DELIVERY_KINDS, SIGN_IN_OFF, WorkerSite, status_of
from farthing.jobs.states import JobState
from farthing.jobs.store import JobView
from farthing.jobs.views import worker_view
from farthing.jobs.web_edge import SecurityHeaders, error, job_id_of, read_body
from farthing.jobs.worker_auth import WorkerSession, WorkerSessions
from farthing.paywall.edge.page import network_label
from farthing.web import HostGuard, allowed_hosts

__all__ = [
    "CSP",
    "SCRIPT_PATH",
    "STYLE_PATH",
    "create_app",
    "public_origin",
]

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
_FORM_FIELDS_MAX: Final = 10


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
    site = WorkerSite(service, sessions, public_url)
    asset, step_lock, body_bytes_max = site.asset, site.step_lock, site.body_bytes_max
    viewer_of, now_s, read_job = site.viewer_of, site.now_s, site.read_job
    jobs_of, open_jobs, step = site.jobs_of, site.open_jobs, site.step
    env = Environment(
        loader=PackageLoader("farthing.jobs", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    shown = {"network": network_label(site.network), "asset": asset.symbol}

    app = FastAPI(title="Farthing jobs", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.sessions = sessions
    # An agent in this same process (a test, a demo) takes it around its own steps.
    app.state.step_lock = step_lock

    # ------------------------------------------------------------ plumbing

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
            if kind not in DELIVERY_KINDS:
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

    add_api(app, site)

    # Added last, runs first: the strict headers wrap even the guard's 421.
    app.add_middleware(HostGuard, hosts=hosts)
    app.add_middleware(SecurityHeaders, csp=CSP)
    return app
