"""The workers' JSON API and pages serve the whole worker side, and refuse everything else with a clear 4xx.

Driven through ``httpx.ASGITransport`` over a real :class:`JobService` on the
memory chain (our escrow at its canonical address, real SQLite books). A
worker signs the server's SIWE challenge with a real key, accepts a job (the
escrow's capturable amount then equals the price), delivers, and after the
agent's side reviews and captures through the service, sees what was paid.
Every refusal is checked for its status and JSON code, and for the chain and
the books not having moved (``Env.check()``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from farthing.jobs import JobState
from farthing.jobs.server import CSP, create_app
from farthing.jobs.site import COOKIE_NAME
from farthing.jobs.worker_auth import WorkerSessions
from farthing.ledger import LedgerDatabase
from farthing.paywall.edge.sign_in import siwe_message
from farthing.wallet.chain import MemoryChain
from tests.jobs.conftest import Env, make_env

pytestmark = pytest.mark.anyio

BASE = "http://jobs.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def env(memory_chain: MemoryChain, sqlite_database: LedgerDatabase) -> Env:
    return make_env(memory_chain, sqlite_database)


@pytest.fixture
async def client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(env.service, public_url=BASE)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as c:
        yield c


def _post_job(env: Env, *, price: str = "500 INR", rate: str | None = "0.0119") -> int:
    result = env.service.post(
        title="Translate a paragraph into Hindi",
        specification="Translate the paragraph.",
        criteria="complete translation",
        price=price,
        rate=rate,
        deadline=env.deadline(3_600),
    )
    assert result.ok and result.job is not None, result.message
    return result.job.id


def _new_worker(env: Env) -> LocalAccount:
    account: LocalAccount = Account.create()
    env.workers.append(account.address)
    return account


def _signed(challenge: dict[str, Any], account: LocalAccount, **changes: Any) -> dict[str, Any]:
    info = challenge["info"]
    payload = {
        **info,
        "address": account.address,
        "chainId": challenge["supportedChains"][0]["chainId"],
        "type": "eip191",
        **changes,
    }
    signed = Account.sign_message(encode_defunct(text=siwe_message(payload)), account.key)
    payload["signature"] = "0x" + signed.signature.hex()
    return payload


async def _sign_in(client: httpx.AsyncClient, account: LocalAccount) -> str:
    challenge = (await client.get("/api/sign-in")).json()
    answer = await client.post("/api/sign-in", json=_signed(challenge, account))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["address"] == account.address
    token: str = body["token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refused(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and "\n" not in body["message"]
    assert "Traceback" not in answer.text
    return body


async def test_a_worker_signs_in_accepts_delivers_and_sees_what_was_paid(
    env: Env, client: httpx.AsyncClient
) -> None:
    job_id = _post_job(env)
    listed = (await client.get("/api/jobs")).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    shown = listed[0]
    assert shown["price"] == {
        "amount": "50000",
        "currency": "INR",
        "decimals": 2,
        "display": "500 INR",
    }
    assert (shown["amount"], shown["amountDisplay"], shown["open"]) == (
        "5950000",
        "5.95 USDC",
        True,
    )
    assert "payment" not in shown and "delivery" not in shown  # not the viewer's job

    worker = _new_worker(env)
    token = await _sign_in(client, worker)
    me = await client.get("/api/me", headers=_bearer(token))
    assert me.json()["address"] == worker.address

    accepted = await client.post(f"/api/jobs/{job_id}/accept", headers=_bearer(token))
    assert accepted.status_code == 200, accepted.text
    job = accepted.json()["job"]
    assert (job["state"], job["yours"], job["payment"]["held"]) == ("accepted", True, "5950000")
    info = env.service.get(job_id).payment_info
    assert info is not None
    assert env.escrow.payment_state(info).capturable_amount == 5_950_000  # the hold is placed
    env.check()
    assert (await client.get("/api/jobs")).json()["jobs"] == []  # no longer open
    mine = (await client.get("/api/jobs?scope=mine", headers=_bearer(token))).json()["jobs"]
    assert [j["id"] for j in mine] == [job_id]

    delivered = await client.post(
        f"/api/jobs/{job_id}/deliver",
        headers=_bearer(token),
        json={"kind": "text", "content": "a complete translation"},
    )
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["job"]["delivery"] == {
        "kind": "text",
        "content": "a complete translation",
    }
    assert delivered.json()["job"]["payment"]["settled"] is False

    # The agent's side: the scripted reviewer accepts (the criterion's words are there), and pays.
    reviewed = env.service.review(job_id)
    assert reviewed.ok, reviewed.message
    assert env.service.get(job_id).state is JobState.PAID
    env.check()
    after = (await client.get(f"/api/jobs/{job_id}", headers=_bearer(token))).json()
    payment = after["payment"]
    assert after["state"] == "paid" and payment["settled"] is True
    assert (payment["captured"], payment["capturedDisplay"], payment["held"]) == (
        "5950000", "5.95 USDC", "0",
    )  # fmt: skip
    assert payment["captureTxs"] == list(env.service.get(job_id).capture_txs)
    assert re.fullmatch(r"0x[0-9a-f]{64}", payment["captureTxs"][0])
    assert after["review"]["decision"] == "accept"
    assert env.token.balance_of(worker.address) == 5_950_000
    # A stranger sees the terms and the state, never the worker's delivery or pay.
    client.cookies.clear()  # the sign-in also set the session cookie
    public = (await client.get(f"/api/jobs/{job_id}")).json()
    assert public["state"] == "paid" and "payment" not in public and "delivery" not in public


async def test_every_refusal_is_a_clear_4xx_and_nothing_moves(
    env: Env, client: httpx.AsyncClient
) -> None:
    job_id = _post_job(env, price="2 USDC", rate=None)
    worker, other = _new_worker(env), _new_worker(env)

    # Not signed in: 401, and a forged or garbled token is no better.
    _refused(await client.post(f"/api/jobs/{job_id}/accept"), 401, "not_signed_in")
    _refused(
        await client.post(f"/api/jobs/{job_id}/accept", headers=_bearer("x.y")),
        401,
        "not_signed_in",
    )
    forged = WorkerSessions.ephemeral().issue(worker.address).token  # another server's key
    _refused(
        await client.post(f"/api/jobs/{job_id}/accept", headers=_bearer(forged)),
        401,
        "not_signed_in",
    )
    _refused(await client.get("/api/jobs?scope=mine"), 401, "not_signed_in")
    env.check()

    token, other_token = await _sign_in(client, worker), await _sign_in(client, other)
    # Unknown jobs and malformed ids.
    _refused(await client.get("/api/jobs/999"), 404, "unknown_job")
    _refused(await client.get(f"/api/jobs/{2**70}"), 404, "unknown_job")
    _refused(await client.post("/api/jobs/999/accept", headers=_bearer(token)), 404, "unknown_job")
    _refused(await client.get("/api/jobs/abc"), 400, "invalid_job_id")
    _refused(await client.get("/api/jobs/-1"), 400, "invalid_job_id")
    _refused(await client.get("/api/jobs?scope=everything"), 400, "invalid_scope")

    # Malformed bodies.
    bad = f"/api/jobs/{job_id}/accept"
    _refused(
        await client.post(bad, headers=_bearer(token), content=b"{not json"), 400, "malformed_body"
    )
    _refused(await client.post(bad, headers=_bearer(token), json=[1, 2]), 400, "malformed_body")
    _refused(
        await client.post(bad, headers=_bearer(token), json={"x": 1}), 422, "unexpected_fields"
    )
    env.check()

    # Odd methods.
    for method, path in (
        ("DELETE", f"/api/jobs/{job_id}"),
        ("PUT", f"/api/jobs/{job_id}/accept"),
        ("GET", f"/api/jobs/{job_id}/deliver"),
        ("PATCH", "/api/sign-in"),
    ):
        _refused(
            await client.request(method, path, headers=_bearer(token)), 405, "method_not_allowed"
        )
    _refused(await client.get("/api/nothing-here"), 404, "not_found")

    # Deliver before accepting: the wrong state.
    deliver = f"/api/jobs/{job_id}/deliver"
    _refused(
        await client.post(deliver, headers=_bearer(token), json={"content": "early"}),
        409,
        "not_awaiting_delivery",
    )
    assert (await client.post(bad, headers=_bearer(token))).status_code == 200
    env.check()
    # A second accept, by anyone: 409, and the hold is not placed twice.
    _refused(await client.post(bad, headers=_bearer(token)), 409, "job_not_open")
    _refused(await client.post(bad, headers=_bearer(other_token)), 409, "job_not_open")
    env.check()

    # Another worker's delivery: 403 not_the_worker.
    _refused(
        await client.post(deliver, headers=_bearer(other_token), json={"content": "mine now"}),
        403,
        "not_the_worker",
    )
    # Malformed deliveries.
    for body, status, code in (
        ({"kind": "video", "content": "x"}, 422, "invalid_delivery_kind"),
        ({"kind": "text", "content": 5}, 422, "invalid_delivery"),
        ({"kind": "text"}, 422, "invalid_delivery"),
        ({"kind": "text", "content": "   "}, 422, "empty_delivery"),
        ({"kind": "url", "content": "javascript:alert(1)"}, 422, "invalid_delivery_url"),
        ({"kind": "text", "content": "x", "price": "9"}, 422, "unexpected_fields"),
    ):
        _refused(await client.post(deliver, headers=_bearer(token), json=body), status, code)
    huge = "x" * (env.service.settings.delivery_chars_max * 4 + 5_000)
    _refused(
        await client.post(deliver, headers=_bearer(token), json={"content": huge}),
        413,
        "body_too_large",
    )
    job = env.service.get(job_id)
    assert (job.state, job.delivery) == (JobState.ACCEPTED, None)
    env.check()


async def test_sign_in_refusals_and_the_session_cookie(env: Env, client: httpx.AsyncClient) -> None:
    worker = _new_worker(env)
    challenge = (await client.get("/api/sign-in")).json()
    info = challenge["info"]
    assert info["domain"] == "jobs.test" and info["uri"] == BASE + "/"
    assert challenge["supportedChains"] == [{"chainId": env.chain.network, "type": "eip191"}]

    # Signed by someone else, for another site, with another statement, or not JSON at all.
    stranger: LocalAccount = Account.create()
    forged = _signed(challenge, stranger)
    forged["address"] = worker.address
    _refused(await client.post("/api/sign-in", json=forged), 401, "invalid_siwx_signature")
    fresh = (await client.get("/api/sign-in")).json()
    _refused(
        await client.post("/api/sign-in", json=_signed(fresh, worker, domain="evil.test")),
        401,
        "invalid_siwx_domain_mismatch",
    )
    _refused(
        await client.post("/api/sign-in", json=_signed(fresh, worker, statement="Pay me")),
        422,
        "invalid_siwx_statement",
    )
    _refused(
        await client.post("/api/sign-in", json=_signed(fresh, worker, nonce="0" * 32)),
        401,
        "invalid_siwx_nonce",
    )
    _refused(
        await client.post(
            "/api/sign-in", content=b"[]", headers={"content-type": "application/json"}
        ),
        400,
        "malformed_body",
    )
    _refused(await client.post("/api/sign-in", content=b"a=b"), 415, "json_required")
    _refused(await client.post("/api/sign-in", content=b"x" * 10_000), 413, "body_too_large")

    # A good one signs in once: the cookie is HttpOnly, SameSite=Strict and expires.
    good = _signed(fresh, worker)
    answer = await client.post("/api/sign-in", json=good)
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Max-Age=", "Path=/"):
        assert attribute.lower() in cookie.lower(), cookie
    _refused(await client.post("/api/sign-in", json=good), 401, "invalid_siwx_nonce_reused")
    assert (await client.get("/api/me")).json()["address"] == worker.address  # by the cookie

    # On a cookie session an API POST must be JSON: a cross-site form cannot send that.
    job_id = _post_job(env, price="1 USDC", rate=None)
    _refused(
        await client.post(f"/api/jobs/{job_id}/accept", content=b"a=b",
                          headers={"content-type": "application/x-www-form-urlencoded"}),
        415, "json_required",
    )  # fmt: skip
    assert env.service.get(job_id).state is JobState.OPEN
    accepted = await client.post(f"/api/jobs/{job_id}/accept", json={})
    assert accepted.status_code == 200, accepted.text
    env.check()


async def test_pages_need_the_csrf_token_and_show_the_pay(
    env: Env, client: httpx.AsyncClient
) -> None:
    job_id = _post_job(env)
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "Translate a paragraph into Hindi" in page.text and "500 INR" in page.text
    assert "5.95 USDC" in page.text and "<script>" not in page.text  # no inline script
    assert 'src="/.jobs/jobs.js"' in page.text
    script = await client.get("/.jobs/jobs.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (await client.get("/.jobs/nothing.js")).status_code == 404
    assert (await client.get("/jobs/77")).status_code == 404
    assert (await client.get("/jobs/x")).status_code == 404

    worker = _new_worker(env)
    await _sign_in(client, worker)  # the client keeps the cookie
    page = (await client.get(f"/jobs/{job_id}")).text
    assert "Accept this job" in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    # Without the session's CSRF token the form does nothing.
    refused = await client.post(f"/jobs/{job_id}/accept", data={"csrf_token": "nope"})
    assert refused.status_code == 403
    assert env.service.get(job_id).state is JobState.OPEN
    done = await client.post(f"/jobs/{job_id}/accept", data={"csrf_token": csrf[1]})
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
    env.check()
    again = await client.post(f"/jobs/{job_id}/accept", data={"csrf_token": csrf[1]})
    assert again.status_code == 409 and "not open" in again.text
    delivered = await client.post(
        f"/jobs/{job_id}/deliver",
        data={"csrf_token": csrf[1], "kind": "text", "content": "a complete translation <b>"},
    )
    assert delivered.status_code == 303
    page = (await client.get(f"/jobs/{job_id}")).text
    assert "a complete translation &lt;b&gt;" in page and "Waiting for the agent" in page
    assert env.service.review(job_id).ok
    page = (await client.get(f"/jobs/{job_id}")).text
    assert "What was paid" in page and "5.95 USDC" in page
    assert env.service.get(job_id).capture_txs[0] in page
    home = (await client.get("/")).text
    assert "Your jobs" in home and ">paid<" in home
    signed_out = await client.post("/sign-out", data={"csrf_token": csrf[1]})
    assert signed_out.status_code == 303
    env.check()


def test_a_session_token_expires_and_cannot_be_altered() -> None:
    sessions = WorkerSessions.ephemeral(lifetime_s=60)
    address = Account.create().address
    issued = sessions.issue(address, now_s=1_000)
    assert sessions.check(issued.token, now_s=1_059) == issued
    assert sessions.check(issued.token, now_s=1_060) is None  # expired
    body, mac = issued.token.split(".")
    assert sessions.check(body[:-2] + "AA." + mac, now_s=1_000) is None
    assert sessions.check(issued.token + "x", now_s=1_000) is None
    assert sessions.csrf_ok(issued, sessions.csrf(issued))
    other = sessions.issue(address, now_s=1_000)
    assert not sessions.csrf_ok(other, sessions.csrf(issued))  # bound to the session
    assert repr(sessions) == "WorkerSessions(lifetime_s=60)"  # never the secret
