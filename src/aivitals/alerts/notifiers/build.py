"""Notifiers from the rule file's ``notifiers:`` section, with ``${NAME}`` read from the environment."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence

from aivitals.alerts.notifiers.alertmanager import AlertmanagerNotifier
from aivitals.alerts.notifiers.base import Notifier
from aivitals.alerts.notifiers.pagerduty import EVENTS_URL, PagerDutyNotifier
from aivitals.alerts.notifiers.slack import SlackNotifier
from aivitals.alerts.notifiers.webhook import WebhookNotifier
from aivitals.alerts.rules import NotifierConfig

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NotifierConfigError(ValueError):
    """A notifier names an environment variable that is not set."""


def expand(text: str, environ: Mapping[str, str], *, where: str) -> str:
    """``text`` with each ``${NAME}`` replaced by the environment variable NAME."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise NotifierConfigError(f"{where}: the environment variable {name} is not set")
        return environ[name]

    return _VARIABLE.sub(value, text)


def build_notifiers(
    configs: Sequence[NotifierConfig],
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Notifier]:
    """One notifier per config, by name; raises `NotifierConfigError` for a missing variable."""
    env = os.environ if environ is None else environ
    built: dict[str, Notifier] = {}
    for config in configs:
        where = f"notifier {config.name!r}"
        url = expand(config.url, env, where=where) if config.url else None
        headers = {k: expand(v, env, where=where) for k, v in config.headers.items()}
        timeout_s = config.timeout_s
        notifier: Notifier
        if config.type == "pagerduty":
            key = expand(config.routing_key or "", env, where=where)
            notifier = PagerDutyNotifier(
                config.name, key, url=url or EVENTS_URL, headers=headers, timeout_s=timeout_s
            )
        elif config.type == "slack":
            notifier = SlackNotifier(config.name, url or "", headers=headers, timeout_s=timeout_s)
        elif config.type == "alertmanager":
            notifier = AlertmanagerNotifier(
                config.name, url or "", headers=headers, timeout_s=timeout_s, clock=clock
            )
        else:
            notifier = WebhookNotifier(config.name, url or "", headers=headers, timeout_s=timeout_s)
        built[config.name] = notifier
    return built
