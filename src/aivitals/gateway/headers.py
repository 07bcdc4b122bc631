"""Which headers cross the gateway, each way.

A proxy forwards end-to-end headers and drops hop-by-hop ones (RFC 9110 §7.6.1): ``Connection``
and every header it names, ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Trailer``,
``Transfer-Encoding``, ``Upgrade``, ``Proxy-Authorization`` and ``Proxy-Authenticate``. The
gateway reads each body whole and sends it on with its own ``Content-Length`` (aiohttp sets it),
so the client's framing never goes upstream: never a ``Transfer-Encoding`` next to a
``Content-Length``, which is how requests are smuggled past one parser and not the next.

The client's credentials stay with the gateway: ``Cookie``, ``X-Api-Key``, ``Api-Key``,
``Proxy-Authorization`` and ``Authorization`` (the proxy puts back the upstream's own key, or the
client's when it runs without gateway keys). On the way back the upstream's ``Set-Cookie`` is
dropped (its cookies are for the gateway's connection, not every client's), and so are the
headers naming the operator's provider account (``OpenAI-Organization``, ``OpenAI-Project``,
``Anthropic-Organization-Id``) and the framing of its body, which the gateway re-frames (and
aiohttp has already decompressed).

>>> upstream_request_headers([("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
...     ("Cookie", "s=1"), ("Transfer-Encoding", "chunked"), ("OpenAI-Beta", "assistants=v2")])
{'openai-beta': 'assistants=v2'}
>>> client_response_headers([("Set-Cookie", "__cf_bm=x"), ("Retry-After", "1"),
...     ("Content-Length", "12"), ("X-Request-Id", "req_1"), ("OpenAI-Organization", "acme")])
[('retry-after', '1'), ('x-request-id', 'req_1')]
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
"""RFC 9110 §7.6.1, with the ``Proxy-Connection`` that old clients still send."""

CLIENT_CREDENTIALS = frozenset(
    {"authorization", "cookie", "x-api-key", "api-key", "proxy-authorization"}
)
"""What identifies the client to the gateway; never forwarded as it came."""

_NOT_FORWARDED = (
    HOP_BY_HOP
    | CLIENT_CREDENTIALS
    | {
        # Set by the upstream client for the body it sends.
        "host",
        "content-length",
        "accept-encoding",
        # The body is already here whole: asking the upstream to wait for it would only stall.
        "expect",
        # The gateway's own upstream span is the parent the upstream sees.
        "traceparent",
        "tracestate",
    }
)
_NOT_RETURNED = HOP_BY_HOP | {
    "set-cookie",
    # The operator's provider account: which organisation and project the gateway's upstream
    # key belongs to is none of its clients' business.
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
    # The gateway frames, types and dates its own answer (uvicorn adds date and server).
    "content-length",
    "content-encoding",
    "content-type",
    "date",
    "server",
}
_OURS = "x-aivitals-"


def _named_by_connection(headers: list[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in headers
        if name == "connection"
        for token in value.split(",")
    }


def upstream_request_headers(
    headers: Iterable[tuple[str, str]], *, ours: dict[str, str] | None = None
) -> dict[str, str]:
    """The client's headers that go upstream, names lower-case; repeats joined with ``, ``
    (RFC 9110 §5.3). The proxy adds the upstream's authorization and trace context itself.

    ``ours``, when given, receives the ``X-Aivitals-*`` headers (which never go upstream), so
    the proxy reads them without another pass over the headers."""
    items = [(name.lower(), value) for name, value in headers]
    dropped = _NOT_FORWARDED | _named_by_connection(items)
    kept: dict[str, str] = {}
    for name, value in items:
        if name.startswith(_OURS):
            if ours is not None:
                ours[name] = value
            continue
        if name in dropped:
            continue
        kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept


def client_response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's answer headers that reach the client (``Retry-After``, ``X-Request-Id``,
    rate-limit figures...), names lower-case, repeats kept."""
    items = [(name.lower(), value) for name, value in headers]
    dropped = _NOT_RETURNED | _named_by_connection(items)
    return [(name, value) for name, value in items if name not in dropped]
