"""A span's call id, and the attributions shared across exports (aivitals.otlp.ids, span_call)."""

from __future__ import annotations

import random
import uuid
from hashlib import blake2b

import pytest

from aivitals.attribution import Attribution
from aivitals.otlp import span_call
from aivitals.otlp.ids import call_id_for_span
from aivitals.otlp.mapping import calls_from_traces
from aivitals.otlp.span_call import Attributor
from aivitals.otlp.values import Value
from tests.support.otlp_spans import CHAT, START_NS, export, span


def rfc9562_id(trace_id: bytes, span_id: bytes, start_unix_nano: int) -> str:
    """The layout as RFC 9562 draws it, byte by byte: 48 bits of Unix ms, then the hash's bytes
    with the version (7) over the top of byte 6 and the variant (0b10) over the top of byte 8."""
    digest = bytearray(blake2b(trace_id + span_id, digest_size=10).digest())
    digest[0] = 0x70 | digest[0] & 0x0F
    digest[2] = 0x80 | digest[2] & 0x3F
    ms = (start_unix_nano // 1_000_000 % (1 << 48)).to_bytes(6, "big")
    return str(uuid.UUID(bytes=ms + bytes(digest)))


def test_call_ids_are_the_rfc_9562_layout_of_the_span_identity() -> None:
    # Ids stored by earlier versions must come out the same, or a retried export after an
    # upgrade would be recorded twice.
    draw = random.Random(17)
    for _ in range(2_000):
        trace_id, span_id = draw.randbytes(16), draw.randbytes(8)
        start = draw.choice([0, 1, draw.randrange(2**64), START_NS + draw.randrange(10**12)])
        assert call_id_for_span(trace_id, span_id, start) == rfc9562_id(trace_id, span_id, start)


def test_a_pinned_call_id() -> None:
    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    span_id = bytes.fromhex("b7ad6b7169203331")
    assert call_id_for_span(trace_id, span_id, START_NS) == "019ad9c8-b200-712a-8659-cf8489cbf25a"


def test_spans_of_one_user_share_an_attribution_across_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []
    build = Attributor._build

    def counted(self: Attributor, values: list[Value]) -> Attribution:
        made = build(self, values)
        built.append(made.user)
        return made

    monkeypatch.setattr(Attributor, "_build", counted)
    monkeypatch.setattr(Attributor, "_shared", {})
    resource = {"service.name": "checkout-ids-test", "deployment.environment.name": "prod"}
    first = calls_from_traces(export(span({**CHAT, "user.id": "u-1"}), resource=resource))
    second = calls_from_traces(
        export(
            span({**CHAT, "user.id": "u-1"}), span({**CHAT, "user.id": "u-2"}), resource=resource
        )
    )
    assert [(c.user, c.environment) for c in (*first.calls, *second.calls)] == [
        ("u-1", "prod"),
        ("u-1", "prod"),
        ("u-2", "prod"),
    ]
    # Each export builds its resource's own attribution (None: no user); u-1 once for both.
    assert built == [None, "u-1", None, "u-2"]


def test_a_resource_with_an_array_value_is_attributed_without_the_shared_cache() -> None:
    resource_attrs = {"service.name": "arrays", "team": ["a", "b"]}
    (call,) = calls_from_traces(
        export(span({**CHAT, "user.id": "u-9"}), resource=resource_attrs)  # type: ignore[arg-type]
    ).calls
    assert call.user == "u-9"


def test_the_attribution_cache_is_bounded_and_keeps_attributing_past_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(span_call, "_ATTRIBUTION_CACHE", 3)
    monkeypatch.setattr(Attributor, "_shared", {})
    resource = {"service.name": "bounded-ids-test"}
    users = [f"u-{n}" for n in range(10)]
    batch = calls_from_traces(
        export(*(span({**CHAT, "user.id": user}) for user in users), resource=resource)
    )
    assert [call.user for call in batch.calls] == users
    (cache,) = Attributor._shared.values()
    assert 0 < len(cache) <= 3


def test_past_its_bound_of_resources_the_shared_cache_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(span_call, "_RESOURCES", 2)
    monkeypatch.setattr(Attributor, "_shared", {})
    remembered = []
    for service in ("a", "b", "c"):
        batch = calls_from_traces(
            export(span({**CHAT, "user.id": f"user-{service}"}), resource={"service.name": service})
        )
        assert batch.calls[0].user == f"user-{service}"
        remembered.append(len(Attributor._shared))
    assert remembered == [1, 2, 1]  # cleared at the third, which is then remembered
