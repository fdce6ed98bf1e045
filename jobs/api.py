"""The workers' JSON API: what worker agents call instead of the pages (``jobs/server.py``).

::

    GET  /api/jobs[?scope=open|mine]      the open jobs (or the signed-in worker's)
    GET  /api/jobs/{id}                   one job (its worker also sees delivery and pay)
    GET  /api/sign-in                     a SIWE challenge (403 sign_in_off without a public URL)
    POST /api/sign-in                     the signed challenge → {"address", "token", "expiresAt"}
    GET  /api/me                          who is signed in
    POST /api/jobs/{id}/accept            take the job (its hold is placed)
    POST /api/jobs/{id}/deliver           {"kind": "text"|"url"|"file", "content": "…"}

Every refusal is JSON ``{"error": code, "message": one line}``. An API POST
on a cookie session must be ``application/json`` (no cross-site form can
send that); a bearer token needs no such proof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from farthing.jobs.lifecycle.result import JobResult
from farthing.jobs.site import COOKIE_NAME, DELIVERY_KINDS, SIGN_IN_OFF, WorkerSite, status_of
from farthing.jobs.store import JobView
from farthing.jobs.views import worker_view
from farthing.jobs.web_edge import error, is_json, job_id_of, json_object, read_body
from farthing.jobs.worker_auth import WorkerSession

__all__ = ["add_api"]

_SIGN_IN_BYTES_MAX: Final = 8 * 1024


def add_api(app: FastAPI, site: WorkerSite) -> None:
    """Add the JSON API's routes to ``app``, over ``site``."""
    service, sessions, asset = site.service, site.sessions, site.asset
    network, public_url, body_bytes_max = site.network, site.public_url, site.body_bytes_max
    viewer_of, now_s, read_job = site.viewer_of, site.now_s, site.read_job
    jobs_of, open_jobs, step = site.jobs_of, site.open_jobs, site.step

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
            if kind not in DELIVERY_KINDS:
                return error(422, "invalid_delivery_kind", "kind is text, url or file")
            if not isinstance(content, str):
                return error(422, "invalid_delivery", "content is the delivery, as a string")
            return step(lambda: service.deliver(job.id, viewer.address, content, kind=kind))

        return await api_action(request, job_id, act)
