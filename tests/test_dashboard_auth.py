"""The dashboard token: asked of the page, its files and the read API; ingest stays open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aivitals.config import read_env
from aivitals.server.dashboard.auth import COOKIE
from aivitals.server.dashboard.routes import plotly_bundle
from aivitals.store.sql import SqlStore
from tests.support.server_app import Served, call_json, serve_app
from tests.test_server_serve import start

TOKEN = "t0ken-for-tests"
READS = (
    "/api/v1/summary",
    "/api/v1/breakdown",
    "/api/v1/timeseries",
    "/api/v1/calls",
    "/api/v1/histogram",
    "/api/v1/quality",
    "/api/v1/values",
    "/api/v1/calls/some-id",
)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Served]:
    with serve_app(SqlStore.open(tmp_path / "aivitals.db"), dashboard_token=TOKEN) as served:
        yield served


def test_without_the_token_reads_are_401_and_ingest_is_open(guarded: Served) -> None:
    for path in READS:
        reply = guarded.client.get(path)
        assert reply.status_code == 401, path
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert "/?token=" in reply.json()["error"]
    assert guarded.client.post("/api/v1/calls", json=call_json()).status_code == 202
    assert guarded.client.get("/healthz").status_code == 200
    assert guarded.client.get("/metrics").status_code == 200


def test_a_bearer_token_opens_the_read_api(guarded: Served) -> None:
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.client.get("/api/v1/summary", headers=good).status_code == 200
    bad = {"Authorization": "Bearer not-it"}
    assert guarded.client.get("/api/v1/summary", headers=bad).status_code == 401


def test_the_page_asks_for_the_token_then_sets_a_cookie(guarded: Served) -> None:
    client = guarded.client
    login = client.get("/")
    assert login.status_code == 401
    assert 'name="token"' in login.text
    assert client.get("/dashboard/static/dashboard.js").status_code == 401
    wrong = client.get("/", params={"token": "not-it"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert COOKIE not in wrong.cookies

    reply = client.get("/", params={"token": TOKEN}, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "./"
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie  # a digest of it, not the token
    # The client keeps the cookie, as a browser would.
    page = client.get("/")
    assert page.status_code == 200 and "dashboard.js" in page.text
    assert client.get("/api/v1/summary").status_code == 200
    assert client.get("/dashboard/static/dashboard.js").status_code == 200


def test_without_a_token_everything_is_open(tmp_path: Path) -> None:
    with serve_app(SqlStore.open(tmp_path / "aivitals.db")) as served:
        page = served.client.get("/")
        assert page.status_code == 200
        version, _ = plotly_bundle()
        assert f"dashboard/vendor/plotly-{version}.min.js" in page.text
        assert served.client.get("/api/v1/summary").status_code == 200


def test_static_files_come_from_the_package(tmp_path: Path) -> None:
    with serve_app(None) as served:
        version, path = plotly_bundle()
        bundle = served.client.get(f"/dashboard/vendor/plotly-{version}.min.js")
        assert bundle.status_code == 200
        assert bundle.content == path.read_bytes()
        assert bundle.headers["content-encoding"] == "gzip"
        assert int(bundle.headers["content-length"]) < path.stat().st_size / 2
        plain = served.client.get(
            f"/dashboard/vendor/plotly-{version}.min.js", headers={"Accept-Encoding": "identity"}
        )
        assert "content-encoding" not in plain.headers
        assert plain.content == path.read_bytes()
        assert "immutable" in bundle.headers["cache-control"]
        assert served.client.get("/dashboard/vendor/plotly-0.0.1.min.js").status_code == 404
        css = served.client.get("/dashboard/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert served.client.get("/dashboard/static/..%2Fauth.py").status_code == 404
        assert served.client.get("/dashboard/static/index.html").status_code == 404


def test_the_environment_variable_is_read_in_config() -> None:
    assert read_env({"AIVITALS_DASHBOARD_TOKEN": " abc "}).dashboard_token == "abc"
    assert read_env({}).dashboard_token is None


@pytest.mark.slow
def test_aivitals_serve_asks_for_the_token_it_was_given(tmp_path: Path) -> None:
    process, url = start("--db", str(tmp_path / "aivitals.db"), "--dashboard-token", TOKEN)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/api/v1/summary").status_code == 401
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert client.get("/api/v1/summary", headers=good).status_code == 200
            assert client.get("/", headers=good).status_code == 200
            assert client.post("/api/v1/calls", json=call_json()).status_code == 202
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()


# A cookie header with bytes past ASCII (a browser extension, a proxy, a hand-made request).
ODD_COOKIES = (
    f"{COOKIE}=caf\xe9".encode("latin-1"),
    f"{COOKIE}=".encode() + "☃".encode(),
    b"other=\xff\xfe; " + COOKIE.encode() + b"=abc",
)


@pytest.mark.parametrize("cookie", ODD_COOKIES)
def test_a_cookie_with_non_ascii_bytes_is_a_401_on_every_guarded_route(
    guarded: Served, cookie: bytes
) -> None:
    for path in (*READS, "/", "/dashboard/static/dashboard.js"):
        reply = guarded.client.get(path, headers=[(b"cookie", cookie)])
        assert reply.status_code == 401, (path, reply.text)
    # With the token as well, the odd cookie costs nothing.
    both = [(b"cookie", cookie), (b"authorization", f"Bearer {TOKEN}".encode())]
    assert guarded.client.get("/api/v1/summary", headers=both).status_code == 200


@pytest.mark.slow
def test_aivitals_serve_answers_a_non_ascii_cookie_with_a_401(tmp_path: Path) -> None:
    process, url = start("--db", str(tmp_path / "aivitals.db"), "--dashboard-token", TOKEN)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for cookie in ODD_COOKIES:
                reply = client.get("/api/v1/summary", headers=[(b"cookie", cookie)])
                assert reply.status_code == 401, reply.text
                assert "token" in reply.json()["error"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
