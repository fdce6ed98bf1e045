"""The workers' server bounds every JSON body, answers only its own host names, and signs in only on a configured origin.

Driven through ``httpx.ASGITransport`` over a real :class:`JobService` on the
memory chain (real SQLite books, our escrow), with real keys signing the
server's SIWE challenge. Application exceptions are not raised into the test
(``raise_app_exceptions=False``) so a crash shows as the 500 a client would
get. Each refusal is checked for its status and its JSON code, and the chain
and the books for not having moved (``Env.check()``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from farthing.jobs import JobState
from farthing.jobs.server import create_app
from farthing.jobs.worker_auth import WORKER_STATEMENT
from farthing.ledger import LedgerDatabase
from farthing.wallet.chain import MemoryChain
from tests.jobs.conftest import Env, make_env
from tests.jobs.test_server import _bearer, _post_job, _refused, _signed

pytestmark = pytest.mark.anyio

BASE = "http://jobs.test"
DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB, under the delivery body limit


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def env(memory_chain: MemoryChain, sqlite_database: LedgerDatabase) -> Env:
    return make_env(memory_chain, sqlite_database)


def _client(app: Any, base: str = BASE) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=base, timeout=60)


@pytest.fixture
async def client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(env.service, public_url=BASE)) as c:
        yield c


async def _sign_in(client: httpx.AsyncClient, account: LocalAccount) -> str:
    challenge = (await client.get("/api/sign-in")).json()
    answer = await client.post("/api/sign-in", json=_signed(challenge, account))
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


_JSON = {"content-type": "application/json"}


async def test_a_body_nested_100000_deep_is_a_400_and_nothing_moves(
    env: Env, client: httpx.AsyncClient
) -> None:
    job_id = _post_job(env, price="1 USDC", rate=None)
    worker: LocalAccount = Account.create()
    env.workers.append(worker.address)
    token = await _sign_in(client, worker)
    headers = {**_bearer(token), "content-type": "application/json"}
    for path in (f"/api/jobs/{job_id}/accept", f"/api/jobs/{job_id}/deliver"):
        _refused(await client.post(path, headers=headers, content=DEEP), 400, "json_too_deep")
    deep_object = b'{"a":' * 1_000 + b'"x"' + b"}" * 1_000  # under the sign-in's 8 KB
    _refused(
        await client.post("/api/sign-in", headers=_JSON, content=deep_object),
        400,
        "json_too_deep",
    )
    assert env.service.get(job_id).state is JobState.OPEN
    env.check()
    # The server still serves: the worker takes the job and delivers.
    assert (await client.post(f"/api/jobs/{job_id}/accept", headers=_bearer(token))).is_success
    _refused(
        await client.post(f"/api/jobs/{job_id}/deliver", headers=headers, content=DEEP),
        400,
        "json_too_deep",
    )
    assert env.service.get(job_id).delivery is None
    env.check()


async def test_a_lone_surrogate_is_a_json_400_not_a_500(
    env: Env, client: httpx.AsyncClient
) -> None:
    job_id = _post_job(env, price="1 USDC", rate=None)
    worker: LocalAccount = Account.create()
    env.workers.append(worker.address)
    token = await _sign_in(client, worker)
    assert (await client.post(f"/api/jobs/{job_id}/accept", headers=_bearer(token))).is_success
    headers = {**_bearer(token), "content-type": "application/json"}
    for raw in (
        rb'{"content":"a\ud800b"}',
        rb'{"kind":"text","content":"ok","\udfff":1}',
        rb'{"content":"\udc80\ud800"}',
    ):
        answer = await client.post(f"/api/jobs/{job_id}/deliver", headers=headers, content=raw)
        _refused(answer, 400, "invalid_text")
        assert answer.headers["content-type"] == "application/json"
    challenge = (await client.get("/api/sign-in")).json()
    signed = _signed(challenge, worker)
    raw = httpx.Request("POST", BASE, json=signed).content.replace(b'"eip191"', rb'"\ud800"')
    _refused(await client.post("/api/sign-in", headers=_JSON, content=raw), 400, "invalid_text")
    # Bytes that are not UTF-8 at all are refused the same way.
    bad = b'{"content":"\xff\xfe"}'
    _refused(
        await client.post(f"/api/jobs/{job_id}/deliver", headers=headers, content=bad),
        400,
        "invalid_encoding",
    )
    job = env.service.get(job_id)
    assert (job.state, job.delivery) == (JobState.ACCEPTED, None)
    delivered = await client.post(
        f"/api/jobs/{job_id}/deliver", headers=headers, content='{"content":"पूरा"}'.encode()
    )
    assert delivered.status_code == 200, delivered.text
    env.check()


async def test_a_challenge_fetched_under_a_forged_host_gives_no_session(env: Env) -> None:
    worker: LocalAccount = Account.create()
    forged = {"host": "evil.example"}
    # No public URL: the server answers only the loopback names, and offers no sign-in.
    async with _client(create_app(env.service), base="http://127.0.0.1:8720") as client:
        refused = await client.get("/api/sign-in", headers=forged)
        assert refused.status_code == 421 and refused.json()["error"] == "misdirected_request"
        for path in ("/", "/api/jobs", "/.jobs/jobs.js"):
            assert (await client.get(path, headers=forged)).status_code == 421
        body = _refused(await client.get("/api/sign-in"), 403, "sign_in_off")
        assert "--public-url" in body["message"]
        relayed = {"statement": WORKER_STATEMENT, "domain": "127.0.0.1:8720"}
        _refused(await client.post("/api/sign-in", json=relayed), 403, "sign_in_off")
        page = await client.get("/")
        assert page.status_code == 200 and "Sign-in is off" in page.text
        assert 'id="jobs-signin"' not in page.text
        assert (await client.get("/api/jobs")).status_code == 200
    # A public URL: the challenge names it, whichever allowed name the request used.
    app = create_app(env.service, public_url="https://jobs.example/workers")
    async with _client(app, base="http://localhost:8720") as client:
        challenge = (await client.get("/api/sign-in")).json()
        assert challenge["info"]["domain"] == "jobs.example"
        assert challenge["info"]["uri"] == "https://jobs.example/"
        answer = await client.post("/api/sign-in", json=_signed(challenge, worker))
        assert answer.status_code == 200, answer.text
        assert "secure" in answer.headers["set-cookie"].lower()
        assert (await client.get("/api/sign-in", headers=forged)).status_code == 421
        on_public = await client.get("/api/jobs", headers={"host": "jobs.example"})
        assert on_public.status_code == 200
    env.check()


async def test_only_the_configured_host_names_are_answered(env: Env) -> None:
    app = create_app(env.service, hosts=["jobs.internal"], public_url="https://jobs.example/")
    async with _client(app, base="http://jobs.internal") as client:
        assert (await client.get("/api/jobs")).status_code == 200
        assert (await client.get("/api/jobs", headers={"host": "jobs.example"})).status_code == 421
        assert (await client.get("/api/jobs", headers={"host": "localhost"})).status_code == 421
        refused = await client.get("/", headers={"host": "127.0.0.1.nip.io"})
        assert refused.status_code == 421
        assert "script-src 'self'" in refused.headers["content-security-policy"]
