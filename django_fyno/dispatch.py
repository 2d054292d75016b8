"""How work leaves the caller: once per transaction after commit, to Celery or inline.

The domain modules (:mod:`~django_fyno.sync`, :mod:`~django_fyno.outbox`…)
register their background work here as *jobs*: a name and the plain function
that does it. They then ask for a job with:

- :func:`defer`: run it after the current transaction commits, once per
  transaction however many times it is asked for (items asked for in one
  transaction are gathered into that one run). Outside a transaction it is
  handed off at once.
- :func:`enqueue`: hand it off now (the sweepers, wake-ups, commands).

"Handing off" follows ``FYNO["TASK_MODE"]``: ``celery`` publishes the Celery
task of the same name (see :mod:`django_fyno.tasks`), ``inline`` runs the
function in this process, ``off`` does nothing.

After a commit, Celery tasks are published from a background thread of the
process: the committing request never waits for the broker, and work that
piles up meanwhile (other transactions' items) is coalesced into one message
per job. Every publish is bounded by ``ENQUEUE_TIMEOUT``, whatever the broker
does. The domain records its work durably before a publish: before asking (a
dirty mirror row, a pending outbox row), or in a *local* job that the same
hand-off runs first (:func:`to_background`; the dirty mark of an autocommitted
save). So a publish that fails is logged (one WARNING line, the traceback at
DEBUG) and left to the sweepers; it never reaches the caller.

This module knows no domain: it imports neither the models nor the tasks.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from django_fyno.conf import TaskMode, fyno_settings

__all__ = [
    "EnqueueTimeout",
    "Job",
    "defer",
    "enqueue",
    "flush",
    "in_transaction",
    "is_deferred",
    "register",
    "to_background",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Background work with a name (the Celery task's name) and the function doing it.

    ``batched``: the items deferred together go to one call, as a list
    (``run(items)``, at most ``BATCH_LIMIT`` items a call); otherwise each
    distinct item gets its own call (``run(item)``, or ``run()`` for ``None``).

    ``local``: never published; run in this process by whoever hands the work
    off (the background thread, or the caller), before any job of the same
    hand-off is published: e.g. the durable record of what the published
    tasks are about to do.
    """

    name: str
    run: Callable[..., Any]
    batched: bool = False
    local: bool = False

    def calls(self, items: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The argument tuples of the hand-offs for ``items``."""
        if self.batched:
            return [
                (list(items[start : start + BATCH_LIMIT]),)
                for start in range(0, len(items), BATCH_LIMIT)
            ]
        return [() if item is None else (item,) for item in items]


#: Items one call of a batched job carries at most (one Celery message).
BATCH_LIMIT = 500


_jobs: dict[str, Job] = {}


def register(
    name: str, run: Callable[..., Any], *, batched: bool = False, local: bool = False
) -> Job:
    """Make ``run`` the job ``name`` (a domain module does this once, at import)."""
    job = Job(name, run, batched, local)
    _jobs[name] = job
    return job


def _job(name: str) -> Job:
    try:
        return _jobs[name]
    except KeyError:
        raise LookupError(f"django-fyno has no job {name!r}") from None


def in_transaction(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the connection is inside ``atomic()`` (so work can wait for its commit)."""
    return bool(transaction.get_connection(using).in_atomic_block)


# -- handing off ---------------------------------------------------------------------------


class EnqueueTimeout(TimeoutError):
    """The broker did not take a task within ``ENQUEUE_TIMEOUT`` seconds."""


class _Publisher:
    """Publishes on a daemon thread, so that no broker can hold the caller for longer
    than ``ENQUEUE_TIMEOUT`` (a refused connection, dropped SYNs, a silent peer).

    A publish that overruns is abandoned with its thread (a daemon: it never keeps the
    process from exiting) and the next publish gets a fresh one; the caller treats the
    overrun as a failed hand-off. Celery's own settings are left as the project set them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[tuple[Callable[[], None], _Outcome]] | None = None

    def _queue(self) -> queue.SimpleQueue[tuple[Callable[[], None], _Outcome]]:
        with self._lock:
            if self._work is None:
                self._work = queue.SimpleQueue()
                thread = threading.Thread(
                    target=_publish_forever, args=(self._work,), name="django-fyno-publisher"
                )
                thread.daemon = True
                thread.start()
            return self._work

    def _abandon(self, work: queue.SimpleQueue[Any]) -> None:
        with self._lock:
            if self._work is work:
                self._work = None
        work.put(None)  # the stuck thread exits once its publish returns, if ever

    def run(self, publish: Callable[[], None], timeout: float) -> None:
        work = self._queue()
        outcome = _Outcome()
        work.put((publish, outcome))
        if not outcome.done.wait(timeout):
            self._abandon(work)
            raise EnqueueTimeout(f"the broker did not take the task within {timeout:g}s")
        if outcome.error is not None:
            raise outcome.error


class _Outcome:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


def _publish_forever(work: queue.SimpleQueue[Any]) -> None:
    while (item := work.get()) is not None:
        publish, outcome = item
        try:
            publish()
        except BaseException as error:  # handed to the caller, who logs it
            outcome.error = error
        finally:
            outcome.done.set()


_publisher = _Publisher()


def _publish(name: str, args: tuple[Any, ...], countdown: float | None, app: Any = None) -> None:
    """Publish the task ``name`` on ``app`` (None: the current Celery app of this thread)."""
    if app is None:
        app = _current_celery_app()
    try:
        task = app.tasks[name]
    except KeyError:
        raise LookupError(
            f"the Celery task {name!r} is not registered: is django_fyno.tasks imported "
            "by your Celery app (app.autodiscover_tasks())? See docs/celery.md"
        ) from None
    options: dict[str, Any] = {}
    queue_name = fyno_settings.CELERY_QUEUE
    if queue_name:
        options["queue"] = queue_name
    if countdown:
        options["countdown"] = countdown
    if app.conf.task_always_eager:
        # Eager Celery runs the task in apply_async's thread: keep it in the caller's
        # (its database connection and transaction).
        task.apply_async(args=args, **options)
        return
    _publisher.run(lambda: task.apply_async(args=args, **options), fyno_settings.ENQUEUE_TIMEOUT)


def _hand_off(
    job: Job, args: tuple[Any, ...], countdown: float | None = None, app: Any = None
) -> bool:
    """Publish or run one call of ``job``; False when nothing was done (mode, or no timer).

    Raises whatever the broker or the inline run raised.
    """
    if not fyno_settings.ENABLED:
        return False
    if job.local:
        job.run(*args)
        return True
    mode = fyno_settings.TASK_MODE
    if mode is TaskMode.CELERY:
        _publish(job.name, args, countdown, app)
        return True
    if mode is TaskMode.INLINE and not countdown:
        job.run(*args)
        return True
    return False  # "off", or a delayed run in "inline" mode (no timer in-process)


def enqueue(name: str, *args: Any, countdown: float | None = None) -> bool:
    """Hand the job ``name`` off now; True when it was published (or run inline).

    Never raises: a failure is logged (one WARNING line, the traceback at DEBUG)
    and returns False. ``countdown`` delays a Celery task; in ``inline`` mode a
    delayed job is not run (there is no timer in-process) and False is returned.
    """
    job = _job(name)
    try:
        return _hand_off(job, args, countdown)
    except Exception as error:
        _log_failures([(job, args, error)])
        return False


def _log_failures(failures: list[tuple[Job, tuple[Any, ...], BaseException]]) -> None:
    names = sorted({job.name for job, _, _ in failures})
    first = failures[0][2]
    logger.warning(
        "django-fyno: %d job(s) (%s) did not run or could not be handed off (%s: %s); "
        "the sweeper will pick the work up",
        len(failures),
        ", ".join(names),
        type(first).__name__,
        first,
    )
    for job, args, error in failures:
        logger.debug("django-fyno: %s%r failed", job.name, args, exc_info=error)


def _published_last(job_and_items: tuple[Job, Any]) -> bool:
    return not job_and_items[0].local


def _hand_off_all(work: Mapping[str, Mapping[Hashable, None]], app: Any = None) -> None:
    """Hand off every call ``work`` asks for, local jobs first; one log line if any
    of it failed."""
    failures: list[tuple[Job, tuple[Any, ...], BaseException]] = []
    jobs = sorted(((_job(name), items) for name, items in work.items()), key=_published_last)
    for job, items in jobs:
        for args in job.calls(list(items)):
            try:
                _hand_off(job, args, app=app)
            except Exception as error:
                failures.append((job, args, error))
    if failures:
        _log_failures(failures)


#: Seconds between two publishing rounds of a process, at least. Under load,
#: the transactions committing meanwhile join the next round, so one message
#: carries the users of many of them and a publish's CPU (one to three
#: milliseconds in Celery) is paid at most five times a second; after a quiet
#: spell, the work leaves at once.
PUBLISH_INTERVAL = 0.2


class _Background:
    """Publishes after-commit work from a daemon thread, so no request waits for a broker.

    Work submitted while a publish is under way is merged, job by job, into the next
    round: under load many transactions share one message. :meth:`flush` waits
    for everything submitted so far (tests; and at exit, for ``ENQUEUE_TIMEOUT``).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._pending: dict[str, dict[Hashable, None]] = {}
        self._app: Any = None
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, work: Mapping[str, Mapping[Hashable, None]], app: Any) -> None:
        """Queue ``work`` for publishing on ``app`` (the Celery app current in the
        caller's thread: another thread would see Celery's default app)."""
        with self._changed:
            self._app = app
            for name, items in work.items():
                self._pending.setdefault(name, {}).update(items)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="django-fyno-dispatch", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def _loop(self) -> None:
        last_round = -PUBLISH_INTERVAL
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending))
                self._busy = True
            wait = last_round + PUBLISH_INTERVAL - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # what commits meanwhile joins this round
            last_round = time.monotonic()
            with self._changed:
                work, self._pending, app = self._pending, {}, self._app
            try:
                _hand_off_all(work, app)
            except BaseException:  # never let the thread die with work still to come
                logger.exception("django-fyno: the background hand-off failed")
            finally:
                # Local jobs may use the database here: its connections follow
                # CONN_MAX_AGE, as a request's do at its end.
                for connection in connections.all(initialized_only=True):
                    connection.close_if_unusable_or_obsolete()
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted was handed off; False if ``timeout`` passed."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout
            )


_background = _Background()
# A forked child (a Celery prefork worker, a pre-forking web server) has no thread.
os.register_at_fork(after_in_child=_background._reset)


def flush(timeout: float | None = None) -> bool:
    """Wait until the after-commit work handed to the background publisher has left.

    For tests, and for scripts that exit right after saving (it also runs at exit,
    for at most ``ENQUEUE_TIMEOUT`` seconds). False when ``timeout`` passed first.
    """
    return _background.flush(timeout)


@atexit.register
def _flush_at_exit() -> None:
    try:
        timeout = fyno_settings.ENQUEUE_TIMEOUT
    except Exception:  # settings gone or broken at exit: don't wait
        return
    _background.flush(timeout)


def _current_celery_app() -> Any:
    from celery import current_app  # type: ignore[import-untyped]  # an optional extra

    return current_app._get_current_object()


def to_background(work: Mapping[str, Mapping[Hashable, None]]) -> bool:
    """Hand ``work`` ({job name: {item: None}}) to the background thread now, if
    that is where hand-offs go (Celery, not eager); False, doing nothing, if not.

    The background thread runs the local jobs first, then publishes the rest.
    """
    if not fyno_settings.ENABLED or fyno_settings.TASK_MODE is not TaskMode.CELERY:
        return False
    app = _current_celery_app()
    if app.conf.task_always_eager:
        return False
    _background.submit(work, app)
    return True


def _run(work: dict[str, dict[Hashable, None]]) -> None:
    """Hand off what one transaction deferred (or one autocommit call asked for)."""
    if not fyno_settings.ENABLED:
        return
    if fyno_settings.TASK_MODE is TaskMode.OFF:
        return  # the domain recorded the work; a sweep or a command does it
    if to_background(work):
        return
    # Inline, or eager Celery: here, in the caller's thread (its database connection).
    _hand_off_all(work)


# -- once per transaction ---------------------------------------------------------------


class _Deferred:
    """Everything one transaction deferred, behind the one on_commit callback it registers.

    It is found again through a weak reference, and only while both hold:

    - it is alive: Django's list of commit hooks is what keeps it; a rollback (of
      the transaction, or of the savepoint it was registered in) drops it;
    - that list is still the connection's: Django starts a new one whenever a
      transaction ends or a savepoint rolls back. This catches a callback kept
      alive by someone else (a traceback, a test holding the callbacks) after its
      transaction ended. After a savepoint's rollback a still-valid callback is
      not recognised: the next :func:`defer` registers a second one, which costs
      one more hand-off, never a lost one.
    """

    __slots__ = ("__weakref__", "fired", "hooks", "work")

    def __init__(self, hooks: object) -> None:
        self.work: dict[str, dict[Hashable, None]] = {}
        self.fired = False
        self.hooks = hooks

    def __call__(self) -> None:
        self.fired = True
        _run(self.work)


class _Pending(threading.local):
    # Connections are per thread, and so are their transactions.
    def __init__(self) -> None:
        self.by_alias: dict[str, weakref.ref[_Deferred]] = {}


_pending = _Pending()


def _current(using: str) -> _Deferred | None:
    ref = _pending.by_alias.get(using)
    deferred = ref() if ref is not None else None
    if deferred is None or deferred.fired:
        return None
    if deferred.hooks is not transaction.get_connection(using).run_on_commit:
        return None  # its transaction (or a savepoint since) ended without it
    return deferred


def defer(name: str, item: Hashable = None, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Hand the job ``name`` off after the current transaction commits, once.

    Every ``item`` deferred for ``name`` in one transaction goes to that one
    hand-off (see :class:`Job`). A rolled-back transaction hands off nothing.
    Outside ``atomic()`` the hand-off happens now. Never raises.
    """
    job = _job(name)
    if not in_transaction(using):
        _run({job.name: {item: None}})
        return
    if fyno_settings.TASK_MODE is TaskMode.OFF:
        return  # nothing leaves; what the domain wrote in the transaction waits for a sweep
    deferred = _current(using)
    if deferred is None:
        deferred = _Deferred(transaction.get_connection(using).run_on_commit)
        transaction.on_commit(deferred, using=using)
        _pending.by_alias[using] = weakref.ref(deferred)
    deferred.work.setdefault(name, {})[item] = None


def is_deferred(name: str, item: Hashable = None, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``item`` is already deferred for ``name`` in the current transaction."""
    if not in_transaction(using):
        return False
    deferred = _current(using)
    return deferred is not None and item in deferred.work.get(name, {})
