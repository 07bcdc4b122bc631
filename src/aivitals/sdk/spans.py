"""OpenTelemetry spans for the SDK's calls, when the application has a `TracerProvider`.

`trace_headers()` gives the W3C ``traceparent``/``tracestate`` of the SDK call span that is
current, for an instrumented client to send upstream.
"""

from __future__ import annotations


def trace_headers() -> dict[str, str]:
    """The W3C ``traceparent`` (and ``tracestate``) of the current SDK call span; ``{}`` when none.

    Never raises.
    """
    return {}
