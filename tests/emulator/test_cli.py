"""``python -m django_fyno.emulator``: a real process, a real port, a real request."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import requests

from django_fyno.emulator.__main__ import build_parser, faults_from

Started = tuple["subprocess.Popen[str]", dict[str, str]]


@pytest.fixture
def run_cli() -> Iterator[Callable[..., Started]]:
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Started:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "django_fyno.emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        env: dict[str, str] = {}
        # The banner ends with the FYNO_API_KEY line.
        for line in process.stdout:
            if "=" in line and line.startswith("FYNO_"):
                name, _, value = line.strip().partition("=")
                env[name] = value
            if line.startswith("FYNO_API_KEY="):
                break
        assert set(env) == {"FYNO_ENDPOINT", "FYNO_WSID", "FYNO_API_KEY"}, process.stderr
        return process, env

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_the_cli_prints_its_endpoint_and_serves_it(run_cli: Callable[..., Started]) -> None:
    process, env = run_cli("--wsid", "FYCLI", "--api-key", "cli-key")
    assert env["FYNO_WSID"] == "FYCLI"
    assert env["FYNO_API_KEY"] == "cli-key"
    endpoint = env["FYNO_ENDPOINT"]
    assert endpoint.startswith("http://127.0.0.1:")
    assert endpoint.endswith("/v1")
    assert not endpoint.endswith(":0/v1")
    reply = requests.get(
        f"{endpoint}/FYCLI/live/profiles/U1",
        headers={"Authorization": "Bearer cli-key"},
        timeout=5,
    )
    assert reply.headers["Content-Type"].startswith("application/json")
    process.terminate()
    assert process.wait(10) == 0  # SIGTERM stops it cleanly


def test_verbose_logs_requests_but_never_the_key(run_cli: Callable[..., Started]) -> None:
    process, env = run_cli("--api-key", "very-secret-key", "--verbose")
    requests.get(
        f"{env['FYNO_ENDPOINT']}/FYTEST/live/profiles/U1",
        headers={"Authorization": "Bearer very-secret-key"},
        timeout=5,
    )
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert "GET /v1/FYTEST/live/profiles/U1" in stderr
    assert "very-secret-key" not in stderr


def test_options_and_their_defaults() -> None:
    args = build_parser().parse_args(["--events", "welcome, otp,,"])
    assert (args.host, args.port, args.prefix, args.wsid) == ("127.0.0.1", 8765, "/v1", "FYTEST")
    assert args.events == ["welcome", "otp"]
    assert faults_from(args) == {}
    args = build_parser().parse_args(
        ["--latency", "0.02", "--latency-jitter", "0.005", "--error-rate", "0.1"]
    )
    assert faults_from(args) == {
        "*": {"latency": 0.02, "jitter": 0.005, "error_rate": 0.1, "error_status": 503}
    }


@pytest.mark.parametrize(
    "bad", [["--error-rate", "1.5"], ["--error-status", "200"], ["--latency", "-1"]]
)
def test_invalid_options_are_refused(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(bad)
    assert exit_.value.code == 2


def test_fault_options_are_put_in_force_for_every_call() -> None:
    from django_fyno.emulator.__main__ import build_emulator

    args = build_parser().parse_args(["--error-rate", "1", "--error-status", "502", "--seed", "7"])
    emulator = build_emulator(args)
    config = emulator.faults_config()
    assert config["seed"] == 7
    assert config["faults"]["*"]["error_rate"] == 1.0
    assert config["faults"]["*"]["error_status"] == 502


def test_fault_options_survive_a_reset() -> None:
    from django_fyno.emulator.__main__ import build_emulator

    emulator = build_emulator(build_parser().parse_args(["--latency", "0.02"]))
    emulator.set_fault("send_event", error_rate=1.0)
    emulator.reset()
    faults = emulator.faults_config()["faults"]
    assert faults["*"]["latency"] == 0.02  # the start configuration stays
    assert "send_event" not in faults  # what was set at run time goes


def test_remote_webhooks_need_the_explicit_flag() -> None:
    from django_fyno.emulator.__main__ import build_emulator
    from django_fyno.emulator.app import WebhookError

    hook = "https://hooks.example.com/fyno"
    emulator = build_emulator(build_parser().parse_args([]))
    with pytest.raises(WebhookError, match="--allow-remote-webhooks"):
        emulator.register_webhook(hook)
    assert emulator.webhook_url is None
    emulator.register_webhook("http://127.0.0.1:8000/fyno")  # loopback is always allowed
    allowed = build_emulator(build_parser().parse_args(["--allow-remote-webhooks"]))
    allowed.register_webhook(hook)
    assert allowed.webhook_url == hook
    allowed.reset()
    assert allowed.allow_remote_webhooks is True  # the start configuration stays
