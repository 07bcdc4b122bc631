"""`build_runtime` builds and owns nothing global; `configure` installs, and says what is wrong."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import aivitals
from aivitals.config import ConfigError
from aivitals.sdk import runtime as runtime_module
from aivitals.sdk.runtime import build_runtime, configure, reset
from aivitals.sinks.memory import MemorySink

from .support.helpers import make_call


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    reset()


def test_build_runtime_installs_nothing() -> None:
    memory = MemorySink()
    built = build_runtime(sinks=[memory], store=False, endpoint=False, flush_interval_s=0.05)
    try:
        assert runtime_module._runtime is None
        built.recorder.record(make_call())
        assert built.recorder.flush(timeout_s=10)
        assert len(memory.calls) == 1
    finally:
        built.recorder.close()
    # The process default is still unbuilt: the next recorded call builds its own.
    assert runtime_module._runtime is None


def test_configure_installs_what_build_runtime_builds() -> None:
    memory = MemorySink()
    installed = configure(sinks=[memory], store=False, endpoint=False, flush_interval_s=0.05)
    assert runtime_module._runtime is installed
    with aivitals.track(model="gpt-4o-mini") as call:
        call.set_usage(input_tokens=10, output_tokens=2)
    assert installed.recorder.flush(timeout_s=10)
    assert [c.model for c in memory.calls] == ["gpt-4o-mini"]


@pytest.mark.parametrize("port", ["abc", 0, 70000, True, 8.5])
def test_a_bad_metrics_port_is_one_clear_line(port: object) -> None:
    with pytest.raises(ConfigError, match=r"^metrics_port must be a port number from 1 to 65535"):
        configure(metrics_port=port, store=False, endpoint=False)  # type: ignore[arg-type]  # on purpose


def test_a_metrics_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot serve metrics on 127.0.0.1:{port} \("):
            configure(metrics_port=port, store=False, endpoint=False)
    assert runtime_module._runtime is None  # nothing half-installed


def test_an_unwritable_log_file_is_one_clear_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"^log_to: cannot write .*a-folder \(Is a directory\)"):
        configure(log_to=folder, store=False, endpoint=False)
    with pytest.raises(ConfigError, match=r"^log_to: cannot write .*No such file or directory"):
        configure(log_to=tmp_path / "missing" / "calls.jsonl", store=False, endpoint=False)
