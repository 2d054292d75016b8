"""Run the django-fyno demo: one command, no Fyno account, nothing but Python 3.10+.

    python3 example_project/demo.py

It makes the repository's virtualenv (``.venv``) if needed and installs django-fyno
with the ``example`` extra into it; starts the bundled Fyno emulator (unless
``FYNO_API_KEY`` is set, for a real workspace); migrates, creates a demo admin and
users, the emulator's events and topics, and points its delivery reports at the
demo's webhook (``manage.py demo_setup``); then serves the site and prints the
URLs and logins. Running it again is fine. Ctrl-C stops everything it started.

Options: ``--port`` (default 8000) and ``--emulator-port`` (default 8765); ``--check``
sets up, starts, checks that the pages answer and the users reached the emulator,
and stops (what the test suite runs).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = REPO / ".venv"
VENV_PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
NEEDS = "import django_fyno, django, environ, celery, yaml, requests"


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def ensure_environment() -> None:
    """Re-run this script with a Python that has django-fyno[example], making it if needed."""
    if subprocess.run([sys.executable, "-c", NEEDS], capture_output=True).returncode == 0:
        return
    if not VENV_PYTHON.exists():
        say(f"creating the virtualenv {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(VENV_PYTHON), "-c", NEEDS], capture_output=True).returncode != 0:
        say("installing django-fyno[example] into it (once)")
        subprocess.run(
            [str(VENV_PYTHON), "-m", "pip", "install", "-q", "-e", f"{REPO}[example]"], check=True
        )
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(url: str, what: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"[demo] {what} stopped at start (exit {process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"[demo] {what} did not answer at {url} within {timeout:.0f} s")


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=HERE, env=env, check=True)


def expect(holds: bool, failure: str) -> None:
    if not holds:
        raise SystemExit(f"[demo] check failed: {failure}")


def check(site: str, emulator: str | None) -> None:
    """What the test suite asks of a running demo: pages answer, users are in Fyno."""
    import json

    import requests

    session = requests.Session()
    for path in ("/", "/login/", "/signup/", "/admin/login/"):
        answer = session.get(site + path, timeout=10)
        expect(answer.status_code == 200, f"{path} answered {answer.status_code}")
    login = session.get(site + "/login/", timeout=10)
    token = session.cookies["csrftoken"]
    answer = session.post(
        site + "/login/",
        data={"username": "ada", "password": "ada-demo-password", "csrfmiddlewaretoken": token},
        headers={"Referer": site + "/login/"},
        timeout=10,
    )
    expect("Signed in as" in answer.text, "ada cannot log in")
    page = session.get(site + "/fyno/preferences/", timeout=10)
    expect("Order updates" in page.text, "the preference center shows no topics")
    expect(login.status_code == 200, "no login page")
    # A notification leaves, and comes back as a delivery report.
    home = session.get(site + "/", timeout=10)
    token = session.cookies["csrftoken"]
    sent = session.post(
        site + "/send/",
        data={"csrfmiddlewaretoken": token},
        headers={"Referer": site + "/"},
        timeout=10,
    )
    expect(home.status_code == 200, "no home page")
    expect(sent.status_code == 200, f"sending the test notification answered {sent.status_code}")
    deadline = time.monotonic() + 20
    while "delivered" not in session.get(sent.url, timeout=10).text:
        expect(time.monotonic() < deadline, f"no delivery report at {sent.url}")
        time.sleep(0.5)
    say(f"check: {sent.url} went out and came back delivered")
    if emulator is not None:
        state = requests.get(f"{emulator}/_emulator/state", timeout=10).json()
        profiles = state["versions"]["test"]["profiles"]
        names = sorted(profile.get("name") or "" for profile in profiles.values())
        say(f"check: the emulator holds {len(profiles)} profiles: {json.dumps(names)}")
        expect({"Ada", "Grace", "Linus"} <= set(names), "the demo users did not reach Fyno")
    say("check: every page answered 200")


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C, or a plain kill, stops what was started (even when started in the
    # background, where a shell would have SIGINT ignored).
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the site's port (8000)")
    parser.add_argument("--emulator-port", type=int, default=8765, help="the emulator's (8765)")
    parser.add_argument("--check", action="store_true", help="start, check, stop")
    args = parser.parse_args()
    ensure_environment()

    import environ  # from here on, the virtualenv has what the demo needs

    environ.Env.read_env(HERE / ".env")  # the variables the settings read, if any
    site = f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "EMULATOR_PORT": str(args.emulator_port),
        "SITE_URL": os.environ.get("SITE_URL") or site,
        "PYTHONUNBUFFERED": "1",
    }
    uses_emulator = not os.environ.get("FYNO_API_KEY")
    for port, what in ((args.port, "the site"), (args.emulator_port, "the emulator")):
        if (uses_emulator or what == "the site") and not port_is_free(port):
            say(f"port {port} for {what} is taken (a demo running?): use --port/--emulator-port")
            return 1

    started: list[subprocess.Popen[bytes]] = []
    try:
        emulator = None
        if uses_emulator:
            emulator = f"http://127.0.0.1:{args.emulator_port}"
            say(f"starting the Fyno emulator on {emulator}")
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "django_fyno.emulator",
                        "--port",
                        str(args.emulator_port),
                        "--wsid",
                        "FYDEMO",
                        "--api-key",
                        "demo-api-key",
                        "--auto-delivery-reports",
                        "1",
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            wait_for(f"{emulator}/_emulator/health", "the emulator", started[-1])
        else:
            say("FYNO_API_KEY is set: using your Fyno workspace (no emulator)")
        say("setting up: migrate, users, Fyno")
        manage("demo_setup", env=env)
        say(f"starting the site on {site}")
        started.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"],
                cwd=HERE,
                env=env,
            )
        )
        wait_for(site + "/", "the site", started[-1])
        if args.check:
            check(site, emulator)
            return 0
        say("ready:")
        say(f"  the shop (log in as ada):      {site}/")
        say(f"  the preference center:         {site}/fyno/preferences/")
        say(f"  the admin (log in as admin):   {site}/admin/")
        if emulator:
            say(f"  the emulator's state:          {emulator}/_emulator/state")
        say("Ctrl-C stops everything.")
        while all(process.poll() is None for process in started):
            time.sleep(0.5)
        say("a process stopped; stopping the others")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if started:
            say("stopped")


if __name__ == "__main__":
    sys.exit(main())
