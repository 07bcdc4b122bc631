"""Gateway keys: who a client is, checked in constant time.

Each key is bound to a team (and optionally a user) and its own limits. Keys are compared as
SHA-256 digests with `hmac.compare_digest`, against every configured key, so the time taken says
nothing about which key, or how much of one, matched.

With keys, the key says who a call is for (`GatewayKey.bind`), never the request: per-user and
per-team budgets and limits then hold however a client names itself. A key's team is the call's
team; its user is the key's ``user``, or the key's name when it has none. Only a key with
``allow_user_header`` (a backend trusted to name its own end users) may name the user in
``X-Aivitals-User`` or the body's ``user``; when it names none, the call is the key's own.

>>> ring = KeyRing([GatewayKey(name="search-prod", secret="sk-gw-search-0123456789", team="search")])
>>> key = ring.authenticate("Bearer sk-gw-search-0123456789")
>>> key.team, ring.authenticate("Bearer nope")
('search', None)
>>> claimed = Attribution(user="someone-else", team="other", feature="ask")
>>> bound = key.bind(claimed)
>>> bound.user, bound.team, bound.feature
('search-prod', 'search', 'ask')
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from aivitals.attribution import Attribution
from aivitals.config import ConfigError


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A client key: the team (and user) its calls are attributed to, and its own limits."""

    name: str
    secret: str = field(repr=False)
    team: str | None = None
    user: str | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    allow_user_header: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ConfigError(
                f"gateway key {self.name!r}: the secret must be at least 16 characters"
            )

    def bind(self, claimed: Attribution) -> Attribution:
        """What the request says about itself, with who it is for decided by this key: its
        team, and its user (or the one the request names, if this key may name users)."""
        named = claimed.user if self.allow_user_header else None
        return replace(claimed, user=named or self.user or self.name, team=self.team)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class KeyRing:
    """The configured keys. An empty ring means keys are not enforced (the quickest start)."""

    def __init__(self, keys: Sequence[GatewayKey] = ()) -> None:
        names = [key.name for key in keys]
        if len(set(names)) != len(names):
            raise ConfigError("gateway key names must be unique")
        self._keys = [(_digest(key.secret), key) for key in keys]

    @property
    def enforced(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> GatewayKey | None:
        """The key behind an ``Authorization: Bearer ...`` header, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        presented = _digest(authorization[len("Bearer ") :].strip())
        found: GatewayKey | None = None
        for digest, key in self._keys:
            # No early exit: every key is compared, whichever matches.
            if hmac.compare_digest(digest, presented):
                found = key
        return found
