"""`DashboardAuth`: the dashboard token, asked of the dashboard's pages and the read API.

A client proves it holds the token with ``Authorization: Bearer TOKEN`` (scripts, Grafana's JSON
data sources), or with the cookie that opening the dashboard at ``/?token=TOKEN`` sets (browsers).
The cookie holds a digest of the token, not the token, and is ``HttpOnly`` and
``SameSite=Strict``: the page's own scripts never see it, and other sites cannot send it. Ingest,
``/metrics``, the health checks and the gateway are not behind it.

>>> auth = DashboardAuth("s3cret")
>>> auth.accepts(authorization="Bearer s3cret", cookie=None)
True
>>> auth.accepts(authorization=None, cookie=auth.cookie_value)
True
>>> auth.accepts(authorization="Bearer guess", cookie="guess")
False
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from aivitals.server.errors import ApiError

COOKIE = "aivitals_dashboard"
COOKIE_MAX_AGE_S = 30 * 86400


class DashboardAuth:
    """Checks requests for the dashboard token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the dashboard token must not be empty")
        self._token = token.encode()
        self.cookie_value = hashlib.sha256(b"aivitals-dashboard\0" + self._token).hexdigest()

    def matches(self, token: str) -> bool:
        """Whether ``token`` is the dashboard token (in constant time)."""
        # surrogatepass: any str has bytes, so no text a client sends can raise here.
        return hmac.compare_digest(token.encode("utf-8", "surrogatepass"), self._token)

    def accepts(self, *, authorization: str | None, cookie: str | None) -> bool:
        """Whether a request with this ``Authorization`` header and cookie may read.

        >>> DashboardAuth("s3cret").accepts(authorization=None, cookie="caf\xe9")
        False
        """
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.matches(credentials.strip()):
            return True
        # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError,
        # which was a 500 on every read route), and headers arrive decoded as Latin-1.
        return cookie is not None and hmac.compare_digest(
            cookie.encode("utf-8", "surrogatepass"), self.cookie_value.encode()
        )

    def allows(self, request: Request) -> bool:
        """Whether ``request`` carries the token, in its header or its cookie."""
        return self.accepts(
            authorization=request.headers.get("authorization"), cookie=request.cookies.get(COOKIE)
        )

    def require(self, request: Request) -> None:
        """A route dependency: answer 401 in the API's error shape without the token."""
        if not self.allows(request):
            raise ApiError(
                401,
                "this server asks for the dashboard token: send Authorization: Bearer TOKEN, "
                "or open the dashboard at /?token=TOKEN",
                headers={"WWW-Authenticate": 'Bearer realm="aivitals"'},
            )
