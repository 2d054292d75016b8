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
function in this process, ``off`` does nothing. A hand-off that fails (the
broker is down, an inline run raised) is logged as one WARNING line per
transaction (the traceback at DEBUG) and never reaches the caller, whose
transaction has committed; the job's ``on_failure`` hook then records what
the sweeper needs to do it later.

This module knows no domain: it imports neither the models nor the tasks.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction

from django_fyno.conf import TaskMode, fyno_settings

__all__ = ["Job", "defer", "enqueue", "in_transaction", "is_deferred", "register"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Background work with a name (the Celery task's name) and the function doing it.

    ``batched``: the items deferred in one transaction go to one call, as a
    list (``run(items)``); otherwise each distinct item gets its own call
    (``run(item)``, or ``run()`` for the item ``None``). ``on_failure(items)``
    runs when a deferred hand-off failed, with the items it carried.
    """

    name: str
    run: Callable[..., Any]
    batched: bool = False
    on_failure: Callable[[list[Any]], None] | None = None

    def calls(self, items: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The argument tuples of the hand-offs for ``items``."""
        if self.batched:
            return [(list(items),)]
        return [() if item is None else (item,) for item in items]


_jobs: dict[str, Job] = {}


def register(
    name: str,
    run: Callable[..., Any],
    *,
    batched: bool = False,
    on_failure: Callable[[list[Any]], None] | None = None,
) -> Job:
    """Make ``run`` the job ``name`` (a domain module does this once, at import)."""
    job = Job(name, run, batched, on_failure)
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


def _publish(name: str, args: tuple[Any, ...], countdown: float | None) -> None:
    from celery import current_app  # type: ignore[import-untyped]  # an optional extra

    try:
        task = current_app.tasks[name]
    except KeyError:
        raise LookupError(
            f"the Celery task {name!r} is not registered: is django_fyno.tasks imported "
            "by your Celery app (app.autodiscover_tasks())? See docs/celery.md"
        ) from None
    options: dict[str, Any] = {}
    queue = fyno_settings.CELERY_QUEUE
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    task.apply_async(args=args, **options)


def _hand_off(job: Job, args: tuple[Any, ...], countdown: float | None = None) -> bool:
    """Publish or run one call of ``job``; False when nothing was done (mode, or no timer).

    Raises whatever the broker or the inline run raised.
    """
    if not fyno_settings.ENABLED:
        return False
    mode = fyno_settings.TASK_MODE
    if mode is TaskMode.CELERY:
        _publish(job.name, args, countdown)
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


def _run(work: dict[str, dict[Hashable, None]]) -> None:
    """Hand off everything one transaction deferred; one log line if any of it failed."""
    if not fyno_settings.ENABLED:
        return
    failures: list[tuple[Job, tuple[Any, ...], BaseException]] = []
    unsent: list[tuple[Job, list[Any]]] = []
    for name, items in work.items():
        job = _job(name)
        for args in job.calls(list(items)):
            try:
                handed_off = _hand_off(job, args)
            except Exception as error:
                failures.append((job, args, error))
                handed_off = False
            if not handed_off:
                unsent.append((job, _items_of(job, args)))
    if failures:
        _log_failures(failures)
    for job, job_items in unsent:
        if job.on_failure is None:
            continue
        try:
            job.on_failure(job_items)
        except Exception:
            logger.exception("django-fyno: could not record the work of %s for later", job.name)


def _items_of(job: Job, args: tuple[Any, ...]) -> list[Any]:
    if job.batched:
        return list(args[0])
    return [args[0] if args else None]


# -- once per transaction ---------------------------------------------------------------


class _Deferred:
    """Everything one transaction deferred, behind the one on_commit callback it registers.

    Django's ``run_on_commit`` list holds the only strong reference to it: when
    the transaction (or the savepoint it was registered in) rolls back, Django
    drops the callback, the object is freed, and the weak reference kept in
    :data:`_pending` dies with it, so the next :func:`defer` starts afresh.
    """

    __slots__ = ("__weakref__", "fired", "work")

    def __init__(self) -> None:
        self.work: dict[str, dict[Hashable, None]] = {}
        self.fired = False

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
        deferred = _Deferred()
        transaction.on_commit(deferred, using=using)
        _pending.by_alias[using] = weakref.ref(deferred)
    deferred.work.setdefault(name, {})[item] = None


def is_deferred(name: str, item: Hashable = None, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``item`` is already deferred for ``name`` in the current transaction."""
    if not in_transaction(using):
        return False
    deferred = _current(using)
    return deferred is not None and item in deferred.work.get(name, {})
