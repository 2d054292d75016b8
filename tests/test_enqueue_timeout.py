"""A broker that refuses, drops connection attempts, or accepts and stays silent never
holds the committing request (it publishes from a background thread, each publish
bounded by ENQUEUE_TIMEOUT); the work is logged once and the sweepers deliver later."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_fyno import dispatch, notify, outbox, sync
from django_fyno.models import FynoOutbox, FynoProfile

User = get_user_model()

TIMEOUT = 1.0
# Thread hand-offs and the test's own bookkeeping: what the bound may be overrun by.
SLACK = 0.5


@contextlib.contextmanager
def fake_broker(mode: str) -> Iterator[str]:
    """A Redis URL whose "server" refuses, drops SYNs, or accepts and says nothing."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()
    if mode == "refused":
        server.close()  # nothing listens on the port
    elif mode == "syn-dropped":
        # A full accept queue: Linux drops further SYNs, so connect() just waits.
        server.listen(0)
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            held.append(filler)
    else:  # "silent": accepts every connection, reads, never answers
        server.listen(16)

        def accept_forever() -> None:
            server.settimeout(0.1)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    connection, _ = server.accept()
                    held.append(connection)

        threading.Thread(target=accept_forever, daemon=True).start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop.set()
        for sock in held:
            sock.close()
        with contextlib.suppress(OSError):
            server.close()


@contextlib.contextmanager
def celery_app_on(broker_url: str) -> Iterator[Any]:
    """A Celery app on ``broker_url``, current (and default) for the block."""
    from celery import Celery, _state

    previous_current, previous_default = _state.get_current_app(), _state.default_app
    app = Celery("fake-broker", broker=broker_url, set_as_current=False)
    app.conf.task_always_eager = False
    app.set_current()
    app.set_default()
    try:
        yield app
    finally:
        previous_current.set_current()
        _state.set_default_app(previous_default)


@pytest.mark.parametrize("mode", ["refused", "syn-dropped", "silent"])
def test_the_committing_request_returns_within_the_bound(
    mode: str, transactional_db: None, fyno_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fyno = {
        **settings.FYNO,
        "TASK_MODE": "celery",
        "ENQUEUE_TIMEOUT": TIMEOUT,
        "RETRY": {"MAX_ATTEMPTS": 1},
    }
    caplog.set_level(logging.WARNING, logger="django_fyno.dispatch")
    with fake_broker(mode) as url, celery_app_on(url), override_settings(FYNO=fyno):
        started = time.monotonic()
        ada = User.objects.create(username="ada", email="ada@example.com")  # autocommit
        saved_in = time.monotonic() - started
        started = time.monotonic()
        notify("welcome", ada)
        notified_in = time.monotonic() - started

        # The background publisher gives up on each round within the bound.
        assert dispatch.flush(2 * TIMEOUT + SLACK), "a hand-off outlived ENQUEUE_TIMEOUT"

    assert saved_in < TIMEOUT + SLACK, f"the save took {saved_in:.2f}s ({mode})"
    assert notified_in < TIMEOUT + SLACK, f"notify took {notified_in:.2f}s ({mode})"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One per round of hand-offs: the save's, and the notify's (or both in one round).
    assert 1 <= len(warnings) <= 2, warnings
    # Left for the sweepers: the dirty mirror row, the pending outbox row.
    assert FynoProfile.objects.get(user=ada).dirty_since is not None
    assert FynoOutbox.objects.get().state == "pending"
    assert fyno_emulator.requests == []

    # Later, the sweepers (here in-process) deliver both.
    with override_settings(FYNO={**fyno, "TASK_MODE": "inline", "SWEEP_AFTER": 0}):
        sync.sweep()
        outbox.sweep_outbox()
    assert fyno_emulator.emulator.profile("test", str(ada.pk)) is not None
    assert FynoOutbox.objects.get().state == "sent"
