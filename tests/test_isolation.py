"""Two runs of the suite at once (a developer's and CI's) share no test database and no
Redis keys: each run's id, ``FYNO_TEST_RUN_ID``, names both (``tests/settings.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
from celery.worker import WorkController
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection

from tests.celery_app import app, create_group
from tests.conftest import require_service, wait_until
from tests.fixtures_celery import _redis_problem, run_key_prefix

ROOT = Path(__file__).resolve().parent.parent
RENDEZVOUS = "FYNO_TEST_RENDEZVOUS"


def _env_of_a_new_run(**extra: str) -> dict[str, str]:
    """This process's environment, as a run started beside this one would have it."""
    env = {key: value for key, value in os.environ.items() if key != "FYNO_TEST_RUN_ID"}
    return {**env, **extra}


def _names_in_a_process(env: dict[str, str]) -> dict[str, Any]:
    """The run id, test database name and broker key prefix another process computes."""
    code = (
        "import json; from tests import settings as s; print(json.dumps({"
        "'run': s.TEST_RUN_ID, 'database': s.DATABASES['default'].get('TEST', {}).get('NAME'),"
        "'prefix': s.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']}))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and settings
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    names: dict[str, Any] = json.loads(done.stdout)
    return names


def _require_redis() -> None:
    problem = _redis_problem(app.conf.broker_url)
    require_service("Redis", problem is None, problem or "")


def _require_postgresql() -> None:
    require_service(
        "PostgreSQL", connection.vendor == "postgresql", "DATABASE_URL does not point at it"
    )


# --- each run computes its own names -------------------------------------------


def test_two_runs_get_different_names() -> None:
    env = _env_of_a_new_run(DATABASE_URL="postgres://postgres@127.0.0.1:5432/fyno")
    first, second = _names_in_a_process(env), _names_in_a_process(env)
    assert first["run"] != second["run"]
    for names in (first, second):
        assert names["database"] == f"test_fyno_{names['run']}"
        assert names["prefix"] == f"fyno-test-{names['run']}:"


def test_the_processes_of_one_run_share_its_names() -> None:
    run = os.environ["FYNO_TEST_RUN_ID"]
    names = _names_in_a_process({**os.environ, "DATABASE_URL": "postgres://h/fyno"})
    assert names == {"run": run, "database": f"test_fyno_{run}", "prefix": f"fyno-test-{run}:"}


def test_a_long_database_name_keeps_the_run_id() -> None:
    env = _env_of_a_new_run(DATABASE_URL="postgres://h/" + "d" * 70, FYNO_TEST_RUN_ID="r1")
    database = _names_in_a_process(env)["database"]
    assert database == "test_" + "d" * 40 + "_r1"
    assert len(database) <= 63  # PostgreSQL's limit


def test_sqlite_keeps_its_in_memory_test_database() -> None:
    names = _names_in_a_process(_env_of_a_new_run(DATABASE_URL="sqlite:///:memory:"))
    assert names["database"] is None


def test_this_run_uses_its_names() -> None:
    run = os.environ["FYNO_TEST_RUN_ID"]
    assert settings.TEST_RUN_ID == run
    # The Celery app of the tests took the prefix from the settings.
    assert app.conf.broker_transport_options == {"global_keyprefix": f"fyno-test-{run}:"}
    assert run_key_prefix() == f"fyno-test-{run}:"


@pytest.mark.django_db
def test_this_run_has_its_own_test_database() -> None:
    _require_postgresql()
    run = os.environ["FYNO_TEST_RUN_ID"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
    assert name == connection.settings_dict["NAME"]
    assert name.startswith("test_")
    assert name.endswith(f"_{run}")


def test_the_broker_keys_carry_the_run_prefix() -> None:
    _require_redis()
    import redis

    queue = f"isolation-{uuid.uuid4().hex[:8]}"
    prefix = run_key_prefix()
    create_group.apply_async(("never-consumed",), queue=queue)
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        assert client.llen(prefix + queue) == 1
        assert client.exists(f"{prefix}_kombu.binding.{queue}")
        assert not client.exists(queue)
        assert not client.exists(f"_kombu.binding.{queue}")
    finally:
        client.delete(prefix + queue, f"{prefix}_kombu.binding.{queue}")
        client.close()


# --- two runs at once ----------------------------------------------------------


def rendezvous_with_another_run(celery_worker_on_redis: WorkController) -> None:
    """Run only by test_two_runs_at_once_do_not_collide, inside each of its two runs.

    (Not collected otherwise: its name does not start with ``test``; those runs
    add ``rendezvous_*`` to ``python_functions``.) With this run's Celery
    worker running, it sends a task and three messages to a queue both runs
    name alike, says which database it has, waits until the other run has done
    the same, then checks that its task ran here and that its queue holds its
    own three messages only.
    """
    import redis

    meeting = Path(os.environ[RENDEZVOUS])
    run = os.environ["FYNO_TEST_RUN_ID"]
    group = f"isolation-{run}"
    create_group.delay(group)
    queue = "isolation-shared-name"
    for number in range(3):
        create_group.apply_async((f"never-consumed-{number}",), queue=queue)
    (meeting / f"{run}.json").write_text(
        json.dumps({"run": run, "database": connection.settings_dict["NAME"]})
    )
    wait_until(lambda: len(list(meeting.glob("*.json"))) == 2, "the other run", timeout=20)
    # The other run's worker did not take this run's task: it ran into this database.
    wait_until(lambda: Group.objects.filter(name=group).exists(), f"group {group}")
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        assert client.llen(run_key_prefix() + queue) == 3
    finally:
        client.close()
    # Both test databases exist at this moment.
    names = [json.loads(path.read_text())["database"] for path in meeting.glob("*.json")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname = ANY(%s)", [names])
        assert cursor.fetchone() == (2,)


@pytest.mark.django_db
def test_two_runs_at_once_do_not_collide(tmp_path: Path) -> None:
    """Two runs of a part of the suite (the rendezvous above, with its Celery worker, and
    the PostgreSQL check) at the same time, on the same PostgreSQL server and Redis database."""
    _require_postgresql()
    _require_redis()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "python_functions=test rendezvous_",
        "tests/test_isolation.py::rendezvous_with_another_run",
        "tests/test_services.py",
    ]
    env = _env_of_a_new_run(FYNO_REQUIRE_SERVICES="1", **{RENDEZVOUS: str(tmp_path)})
    runs = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and tests
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        summary = output.strip().splitlines()[-1]
        assert " passed" in summary, output
        assert "skipped" not in summary, output

    met = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert len(met) == 2
    assert met[0]["run"] != met[1]["run"]
    for names in met:
        assert names["database"].endswith(f"_{names['run']}")
    # Each run dropped its test database and deleted its Redis keys.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)",
            [[names["database"] for names in met]],
        )
        assert cursor.fetchall() == []
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        for names in met:
            assert list(client.scan_iter(match=f"fyno-test-{names['run']}:*")) == []
    finally:
        client.close()
