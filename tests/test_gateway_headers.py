"""Which headers cross the gateway: every RFC 9110 hop-by-hop name, both ways, and credentials."""

from __future__ import annotations

import pytest

from aivitals.gateway.headers import (
    CLIENT_CREDENTIALS,
    HOP_BY_HOP,
    client_response_headers,
    upstream_request_headers,
)

RFC_9110_HOP_BY_HOP = {
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


def test_the_lists_are_the_rfcs_and_the_clients_keys() -> None:
    assert HOP_BY_HOP == RFC_9110_HOP_BY_HOP
    assert {"authorization", "cookie", "x-api-key", "proxy-authorization"} <= CLIENT_CREDENTIALS


@pytest.mark.parametrize("name", sorted(RFC_9110_HOP_BY_HOP | CLIENT_CREDENTIALS))
def test_no_hop_by_hop_or_credential_header_goes_upstream_whatever_its_case(name: str) -> None:
    sent = [(name.title(), "x"), ("X-Kept", "1")]
    assert upstream_request_headers(sent) == {"x-kept": "1"}


def test_headers_named_by_connection_stay_too_and_repeats_are_joined() -> None:
    sent = [
        ("Connection", "close, X-Hop-One"),
        ("connection", "x-hop-two"),
        ("x-hop-one", "1"),
        ("X-Hop-Two", "2"),
        ("Accept", "application/json"),
        ("accept", "text/plain"),
        ("X-Aivitals-Team", "search"),  # the gateway's own: never forwarded
        ("Content-Length", "12"),
        ("Host", "gateway:8700"),
        ("Expect", "100-continue"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
    assert upstream_request_headers(sent) == {"accept": "application/json, text/plain"}


@pytest.mark.parametrize(
    "name",
    sorted(RFC_9110_HOP_BY_HOP | {"set-cookie", "content-length", "content-encoding", "date"}),
)
def test_no_hop_by_hop_header_or_cookie_comes_back(name: str) -> None:
    answered = [(name.title(), "x"), ("Retry-After", "7")]
    assert client_response_headers(answered) == [("retry-after", "7")]


def test_end_to_end_answer_headers_come_back_in_order_with_repeats() -> None:
    answered = [
        ("Connection", "keep-alive, X-Edge-Hop"),
        ("X-Edge-Hop", "1"),
        ("X-Request-Id", "req_1"),
        ("Link", "<a>"),
        ("Link", "<b>"),
        ("x-ratelimit-remaining-requests", "499"),
    ]
    assert client_response_headers(answered) == [
        ("x-request-id", "req_1"),
        ("link", "<a>"),
        ("link", "<b>"),
        ("x-ratelimit-remaining-requests", "499"),
    ]
