"""The dashboard's routes: the page at ``/``, our static files, and Plotly from its package.

Plotly's bundle is read from the installed ``plotly`` wheel (``plotly/package_data``) and served
under a URL that names its version, so browsers may cache it for good; nothing is fetched from
a CDN and no copy of it lives in this repository. Our own files are small and change with
aivitals, so browsers revalidate them (their ETag makes that cheap).
"""

from __future__ import annotations

import gzip
import html
from functools import cache
from importlib import metadata, resources
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from aivitals.server.dashboard.auth import COOKIE, COOKIE_MAX_AGE_S, DashboardAuth
from aivitals.server.errors import ApiError

STATIC = resources.files("aivitals.server.dashboard") / "static"
_OURS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "cache.js": "text/javascript",
    "compare.js": "text/javascript",
    "drift.js": "text/javascript",
    "quality.js": "text/javascript",
}
_REVALIDATE = {"Cache-Control": "no-cache"}
_FOREVER = {"Cache-Control": "public, max-age=31536000, immutable"}

_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aivitals: token needed</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px system-ui,sans-serif;max-width:28rem;margin:4rem auto;color:#1f2430}}
input,button{{font:inherit;padding:.4rem .6rem}}</style></head>
<body><h1>aivitals</h1><p>{message}</p>
<form method="get" action="./"><label>Dashboard token
<input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit">Open</button></form></body></html>
"""


@cache
def plotly_bundle() -> tuple[str, Path]:
    """The installed Plotly package's version and the path of its ``plotly.min.js``."""
    try:
        dist = metadata.distribution("plotly")
    except metadata.PackageNotFoundError:
        raise RuntimeError("the dashboard needs the plotly package: pip install plotly") from None
    path = Path(str(dist.locate_file("plotly/package_data/plotly.min.js")))
    if not path.is_file():
        raise RuntimeError(f"the plotly package has no bundle at {path}: reinstall plotly")
    return dist.version, path


@cache
def _page() -> str:
    version, _ = plotly_bundle()
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return text.replace("{{plotly}}", f"dashboard/vendor/plotly-{version}.min.js")


def dashboard_router(auth: DashboardAuth | None = None) -> APIRouter:
    """The dashboard's routes; with ``auth``, each asks for the dashboard token."""
    router = APIRouter(include_in_schema=False)

    def guarded(request: Request) -> None:
        if auth is not None and not auth.allows(request):
            raise ApiError(
                401, "the dashboard token is needed: open the dashboard at /?token=TOKEN"
            )

    @router.get("/", response_class=HTMLResponse)
    def page(request: Request, token: str | None = None) -> Response:
        if auth is None:
            return HTMLResponse(_page(), headers=_REVALIDATE)
        if token is not None:
            if not auth.matches(token):
                return _login("That token is not the dashboard token.", 401)
            # Out of the address bar (and history, and Referer headers) once the cookie is set.
            answer = RedirectResponse("./", status_code=303)
            answer.set_cookie(
                COOKIE,
                auth.cookie_value,
                max_age=COOKIE_MAX_AGE_S,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return answer
        if not auth.allows(request):
            return _login("This dashboard asks for a token.", 401)
        return HTMLResponse(_page(), headers=_REVALIDATE)

    @router.get("/dashboard/static/{name}", dependencies=[Depends(guarded)])
    def static(name: str) -> Response:
        media_type = _OURS.get(name)
        if media_type is None:
            raise ApiError(404, "no such dashboard file")
        path = Path(str(STATIC / name))
        return FileResponse(path, media_type=media_type, headers=_REVALIDATE)

    @router.get("/dashboard/vendor/plotly-{version}.min.js", dependencies=[Depends(guarded)])
    def plotly(request: Request, version: str) -> Response:
        installed, path = plotly_bundle()
        if version != installed:
            raise ApiError(404, f"this server serves plotly {installed}")
        headers = {**_FOREVER, "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(_gzipped(path), media_type="text/javascript", headers=headers)
        return FileResponse(path, media_type="text/javascript", headers=headers)

    return router


@cache
def _gzipped(path: Path) -> bytes:
    """The bundle compressed once per process: 4.8 MB becomes about 1.4 MB on the wire."""
    return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


def _login(message: str, status: int) -> HTMLResponse:
    return HTMLResponse(_LOGIN.format(message=html.escape(message)), status_code=status)
