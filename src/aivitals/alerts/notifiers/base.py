"""What a notifier receives (`Notification`) and how notifiers that post JSON over HTTP work."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import httpx

from aivitals.retry import parse_retry_after

Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One alert changing state (or still firing, when ``repeat``), as every notifier sees it.

    Times are epoch seconds. ``fingerprint`` is stable for a rule and its group labels: the
    PagerDuty dedup key and the identity of the alert everywhere.
    """

    status: Status
    rule: str
    severity: str
    labels: dict[str, str]
    summary: str
    value: float | None
    threshold: float
    op: str
    window: str
    fingerprint: str
    starts_at: float
    ends_at: float | None = None
    repeat: bool = False
    test: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(**data)


def iso(epoch_s: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager and PagerDuty read it."""
    return (
        datetime.fromtimestamp(epoch_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class DeliveryError(Exception):
    """A notification did not get through; the engine retries it with back-off.

    ``retry_after_s``: the receiver's ``Retry-After`` (Slack and PagerDuty send one on 429),
    which the engine waits instead of its own back-off.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Notifier(Protocol):
    """Sends notifications; raises `DeliveryError` when one does not get through."""

    name: str
    refresh_s: float | None
    """Resend a firing alert this often (Alertmanager forgets alerts not re-sent), or None."""

    def send(self, notification: Notification) -> None: ...


class HttpNotifier:
    """Posts `payload(notification)` as JSON to ``url``; any status but 2xx is a failure."""

    refresh_s: float | None = None

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s
        self._transport = transport

    def target(self) -> str:
        """Where the payload goes (a subclass may add a path)."""
        return self.url

    def payload(self, notification: Notification) -> Any:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        # A client per notification: alerts are rare, and nothing is left open between them.
        try:
            with httpx.Client(
                timeout=self._timeout_s, headers=self._headers, transport=self._transport
            ) as client:
                reply = client.post(self.target(), json=self.payload(notification))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= reply.status_code < 300:
            raise DeliveryError(
                f"{self.name}: HTTP {reply.status_code}: {reply.text[:200]}",
                retry_after_s=parse_retry_after(reply.headers.get("retry-after"))
                if reply.status_code in (429, 503)
                else None,
            )


class MemoryNotifier:
    """Keeps every notification in ``sent``; for tests (yours too)."""

    refresh_s: float | None = None

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)
