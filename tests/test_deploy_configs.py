"""The deployment's Prometheus, Alertmanager and Grafana files, checked by their own tools.

``promtool check config`` (which checks the rule files it names too) and ``amtool check-config``
must pass; then a real Prometheus runs the deploy config, its aivitals job pointed at a real
``aivitals serve``, and loads every exported rule. Grafana cannot run here: its provisioning files
are held to the compose file's addresses and mounts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from .support.deploy import COMPOSE, DEPLOY, SERVE_PORT, load_yaml
from .support.gateway_processes import ServeProcess
from .support.realservers import Prometheus, need, poll

PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RULES = DEPLOY / "prometheus" / "aivitals-rules.yml"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_passes_the_config_and_the_rules_it_names() -> None:
    done = run(need("promtool", package="prometheus"), "check", "config", str(PROMETHEUS_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout + done.stderr


def test_promtool_passes_the_exported_rules() -> None:
    done = run(need("promtool", package="prometheus"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_amtool_passes_the_alertmanager_config() -> None:
    amtool = need("amtool", package="prometheus-alertmanager")
    done = run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


def test_amtool_refuses_a_broken_config(tmp_path: Path) -> None:
    # The check above can fail: a route to a receiver that does not exist is refused.
    amtool = need("amtool", package="prometheus-alertmanager")
    config = load_yaml(ALERTMANAGER_CONFIG)
    config["route"]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    assert run(amtool, "check-config", str(broken)).returncode != 0


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return services


def test_prometheus_scrapes_aivitals_and_alerts_the_compose_alertmanager() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "aivitals"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["aivitals"]  # the compose service: one address per replica
    assert str(discovery["port"]) == SERVE_PORT
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    (target,) = alertmanagers["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    services = compose_services()
    assert host in services
    assert port in [str(p).rpartition(":")[2] for p in services[host]["ports"]]
    assert [(PROMETHEUS_CONFIG.parent / f).resolve() for f in config["rule_files"]] == [RULES]


def test_grafana_reads_the_compose_prometheus_and_the_mounted_dashboards() -> None:
    services = compose_services()
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    (source,) = datasources["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname in services
    assert str(url.port) in [str(p).rpartition(":")[2] for p in services[url.hostname]["ports"]]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True  # the dashboard's datasource variable picks it
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/aivitals.yml")["providers"]
    (provider,) = providers
    mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


@pytest.mark.slow
def test_a_real_prometheus_on_the_deploy_config_scrapes_aivitals_and_loads_every_rule(
    tmp_path: Path,
) -> None:
    binary = need("prometheus")
    with ServeProcess(tmp_path / "serve") as serve:
        config = load_yaml(PROMETHEUS_CONFIG)
        # Only what cannot exist here changes: the compose DNS name becomes the real server,
        # the Alertmanager is dropped, and the scrape is quick so the test does not wait 15 s.
        for job in config["scrape_configs"]:
            if job["job_name"] == "aivitals":
                del job["dns_sd_configs"]
                job["static_configs"] = [{"targets": [f"127.0.0.1:{serve.port}"]}]
        config["scrape_configs"] = [
            j for j in config["scrape_configs"] if j["job_name"] == "aivitals"
        ]
        config["alerting"] = {"alertmanagers": []}
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(RULES)]
        with Prometheus(binary, tmp_path / "prometheus", targets=[]) as prometheus:
            prometheus.config = config
            prometheus.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            reload = prometheus.client.post(prometheus.url + "/-/reload")
            assert reload.status_code == 200, reload.text
            prometheus.wait_until_scraped()
            exported = {
                rule.get("alert") or rule.get("record")
                for group in load_yaml(RULES)["groups"]
                for rule in group["rules"]
            }

            def loaded() -> set[str] | None:
                groups = prometheus.api("rules")["groups"]
                names = {rule["name"] for group in groups for rule in group["rules"]}
                return names if names == exported else None

            poll("every exported rule loaded", loaded)
            # The server's own series come through the deploy config's scrape.
            assert prometheus.wait_for("aivitals_event_loop_lag_seconds_count", bool)


def scaling_doc_snippets() -> list[str]:
    text = (DEPLOY.parent / "docs" / "scaling.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)


def test_the_scaling_doc_prometheus_snippets_pass_promtool(tmp_path: Path) -> None:
    promtool = need("promtool", package="prometheus")
    rules, *configs = scaling_doc_snippets()
    assert configs, "docs/scaling.md lost its federation and remote-write snippets"
    (tmp_path / "rules.yml").write_text(rules)
    done = run(promtool, "check", "rules", str(tmp_path / "rules.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    for index, config in enumerate(configs):
        path = tmp_path / f"prometheus-{index}.yml"
        path.write_text(config)
        done = run(promtool, "check", "config", str(path))
        assert done.returncode == 0, (config, done.stdout + done.stderr)
