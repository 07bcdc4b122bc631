from __future__ import annotations

import pytest

from aivitals.config import ConfigError
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.limits import Limit, LimitPolicy, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_slide() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limit = Limit("user", "u1", requests_per_minute=3)
    assert [limiter.admit([limit]).allowed for _ in range(4)] == [True, True, True, False]
    clock.now += 30
    refused = limiter.admit([limit])
    assert not refused.allowed and refused.retry_after_s == 30
    clock.now += 30.001
    assert limiter.admit([limit]).allowed


def test_tokens_per_minute_refuse_after_the_budget_is_spent() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limit = Limit("team", "search", tokens_per_minute=1000)
    assert limiter.admit([limit]).allowed
    limiter.spend_tokens([limit], 600)
    assert limiter.admit([limit]).allowed
    limiter.spend_tokens([limit], 600)
    refused = limiter.admit([limit])
    assert not refused.allowed and "1200 used" in refused.reason
    clock.now += 61
    assert limiter.admit([limit]).allowed


def test_one_refusing_limit_counts_nothing_against_the_others() -> None:
    limiter = RateLimiter(clock=Clock())
    tight = Limit("user", "u1", requests_per_minute=1)
    loose = Limit("team", "t", requests_per_minute=10)
    assert limiter.admit([tight, loose]).allowed
    assert not limiter.admit([tight, loose]).allowed
    assert [limiter.admit([loose]).allowed for _ in range(9)] == [True] * 9
    assert not limiter.admit([loose]).allowed


def test_policy_picks_the_limits_that_apply() -> None:
    policy = LimitPolicy(per_user=(10, None), per_team={"search": (None, 5000)})
    found = policy.limits(key_name="k", key_limits=(5, None), user="u1", team="search")
    assert found == [
        Limit("key", "k", 5, None),
        Limit("user", "u1", 10, None),
        Limit("team", "search", None, 5000),
    ]
    assert policy.limits(key_name=None, key_limits=(None, None), user=None, team="other") == []


def test_keys_are_checked_against_every_key() -> None:
    ring = KeyRing(
        [
            GatewayKey(name="a", secret="sk-gw-aaaaaaaaaaaaaaaa", team="a"),
            GatewayKey(name="b", secret="sk-gw-bbbbbbbbbbbbbbbb", team="b"),
        ]
    )
    assert ring.enforced
    found = ring.authenticate("Bearer sk-gw-bbbbbbbbbbbbbbbb")
    assert found is not None and found.team == "b"
    assert ring.authenticate("Bearer sk-gw-bbbbbbbbbbbbbbb") is None
    assert ring.authenticate("sk-gw-bbbbbbbbbbbbbbbb") is None
    assert ring.authenticate(None) is None
    assert not KeyRing().enforced


def test_key_config_mistakes() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        GatewayKey(name="short", secret="sk-1")
    with pytest.raises(ConfigError, match="unique"):
        KeyRing([GatewayKey(name="x", secret="s" * 16), GatewayKey(name="x", secret="t" * 16)])
    assert "sk-" not in repr(GatewayKey(name="x", secret="sk-" + "s" * 16))
