"""The example project's one command, run as README.md gives it, in its --check mode.

``example_project/demo.py --check`` sets the demo up on a fresh SQLite database
(migrations, the admin and users, the emulator's events, topics and webhook), starts
the emulator and the site, checks that the pages answer 200, that a user logs in and
sees the preference center, that a test notification goes out and comes back as a
delivery report, and that the users reached the emulator; then stops everything.
It runs twice on the same database: the demo is safe to run again. And Ctrl-C
(SIGINT) stops the site and the emulator it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "example_project" / "demo.py"
# Variables of the host's environment that would point the demo elsewhere.
HOST_ONLY = (
    "DATABASE_URL",
    "FYNO_API_KEY",
    "FYNO_WSID",
    "FYNO_ENDPOINT",
    "CELERY_BROKER_URL",
    "SITE_URL",
    "DJANGO_SETTINGS_MODULE",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_demo(database: Path, ports: tuple[int, int]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in HOST_ONLY}
    env["DATABASE_URL"] = f"sqlite:///{database}"
    command = [
        sys.executable,
        str(DEMO),
        "--check",
        "--port",
        str(ports[0]),
        "--emulator-port",
        str(ports[1]),
    ]
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        command, env=env, capture_output=True, text=True, timeout=180
    )


def test_the_demo_sets_up_serves_and_checks_itself_twice(tmp_path: Path) -> None:
    pytest.importorskip("celery", reason="the demo needs django-fyno[example]")
    pytest.importorskip("environ", reason="the demo needs django-fyno[example]")
    database = tmp_path / "demo.sqlite3"
    # The same ports each time, as a user re-running the command has: the profiles
    # recorded the emulator's endpoint as their workspace.
    ports = (free_port(), free_port())
    while ports[1] == ports[0]:
        ports = (ports[0], free_port())

    for attempt in ("first", "second"):
        result = run_demo(database, ports)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{attempt} run failed:\n{output[-4000:]}"
        assert "check: every page answered 200" in output
        assert "came back delivered" in output
        assert '"Ada", "Grace", "Linus"' in output
        assert "admin / admin-demo-password" in output  # the logins are printed
        assert "[demo] stopped" in output
    assert "Traceback" not in output


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    pytest.importorskip("celery", reason="the demo needs django-fyno[example]")
    pytest.importorskip("environ", reason="the demo needs django-fyno[example]")
    env = {key: value for key, value in os.environ.items() if key not in HOST_ONLY}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    site, emulator = free_port(), free_port()
    command = [sys.executable, str(DEMO), "--port", str(site), "--emulator-port", str(emulator)]
    demo = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = []
        for line in demo.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any("the preference center" in line for line in lines), "".join(lines)
        for port in (site, emulator):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) == 0, f"nothing on {port}"

        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends

        assert demo.wait(timeout=30) == 0
        rest = demo.stdout.read()  # type: ignore[union-attr]
        assert "[demo] stopped" in rest
        for port in (site, emulator):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"{port} still served"
    finally:
        if demo.poll() is None:
            demo.kill()
