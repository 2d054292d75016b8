"""Every Python and shell code block of README.md and docs/*.md is run here, or says why not.

The blocks concerned are fenced blocks whose info string is ``python``, ``py``, ``sh``,
``shell``, ``bash`` or ``console``. The convention, for documentation writers:

- A block is **run** unless marked. A Python block is executed in a fresh namespace,
  in a test with database access (``transaction=True``, so after-commit work happens)
  and the in-process emulator (``fyno_emulator``) standing in for Fyno, with the test
  settings (``TASK_MODE`` ``"inline"``). A ``FYNO`` dict it defines must use known
  settings; a ``CELERY_BEAT_SCHEDULE`` must name django-fyno's tasks; receivers it
  connects are disconnected afterwards; admin registrations go to a copy of the admin
  site, whose checks must pass.
- A shell block (``console``: its ``$`` lines) is run by ``bash`` only when each of
  its commands is one of django-fyno's own entry points (``python -m django_fyno...``),
  with this interpreter as ``python``; it must exit with status 0.
- A block that is not run says so on the line before it (blank lines aside)::

      <!-- not run: REASON -->

  A Python block that is not run must still compile, unless its reason starts with
  ``fragment`` (a call signature, a settings excerpt with ``...`` in a dict).

Anything else fails here: an unmarked block that cannot be run (listed with its file
and line), a block that raises or exits non-zero, a Python block that does not compile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PYTHON = {"python", "py"}
SHELL = {"sh", "shell", "bash", "console"}

NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
OPENING_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
# Commands a shell block may hold and still be run here: django-fyno's own.
RUNNABLE_COMMAND = re.compile(r"^python -m django_fyno[.\w]*( |$)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    source: str
    not_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON

    def commands(self) -> list[str]:
        """A shell block's commands (for ``console``, its ``$`` lines without the prompt)."""
        lines = self.source.splitlines()
        if self.language == "console":
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    @property
    def runnable(self) -> bool:
        if self.not_run is not None:
            return False
        if self.is_python:
            return True
        commands = self.commands()
        return bool(commands) and all(RUNNABLE_COMMAND.match(c) for c in commands)


def read_blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = OPENING_FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        words = opening["info"].split()
        language = words[0].lower() if words else ""
        if language in PYTHON | SHELL:
            before = [line for line in lines[:index] if line.strip()]
            marker = NOT_RUN.match(before[-1]) if before else None
            body = [
                line[indent:] if line[:indent].isspace() else line
                for line in lines[index + 1 : end]
            ]
            yield Block(
                page=page,
                line=index + 1,
                language=language,
                source="\n".join(body) + "\n",
                not_run=marker["reason"] if marker else None,
            )
        index = end + 1


BLOCKS = [block for page in PAGES for block in read_blocks(page)]
PYTHON_TO_RUN = [b for b in BLOCKS if b.is_python and b.runnable]
SHELL_TO_RUN = [b for b in BLOCKS if not b.is_python and b.runnable]
PYTHON_TO_COMPILE = [
    b for b in BLOCKS if b.is_python and b.not_run and not b.not_run.startswith("fragment")
]


def test_the_pages_have_code_blocks() -> None:
    # A parser that finds nothing would make every other test here pass.
    assert len(BLOCKS) > 20
    assert PYTHON_TO_RUN
    assert SHELL_TO_RUN


def test_every_block_is_run_or_marked_not_run() -> None:
    unmarked = [
        f"{b.where}: a {b.language} block this test cannot run; mark it "
        "'<!-- not run: REASON -->' on the line before it"
        for b in BLOCKS
        if not b.runnable and b.not_run is None
    ]
    assert not unmarked, "\n".join(unmarked)


@pytest.mark.parametrize("block", PYTHON_TO_COMPILE, ids=lambda b: b.where)
def test_python_block_not_run_compiles(block: Block) -> None:
    compile(block.source, block.where, "exec")


@contextmanager
def _a_copy_of_the_admin_site() -> Iterator[Any]:
    """``admin.site`` for one block: registrations in it leave the project's alone."""
    from unittest import mock

    from django.contrib import admin
    from django.contrib.admin import sites

    site = admin.AdminSite(name="docs")
    site._registry.update(sites.site._registry)
    with mock.patch.object(sites, "site", site), mock.patch.object(admin, "site", site):
        yield site


def _disconnect_receivers(namespace: dict[str, Any]) -> None:
    from django.dispatch import Signal

    from django_fyno import signals

    for signal in vars(signals).values():
        if isinstance(signal, Signal):
            for value in namespace.values():
                if callable(value):
                    signal.disconnect(value)


def _check_settings(block: Block, namespace: dict[str, Any]) -> None:
    from django_fyno import outbox, sync
    from django_fyno.conf import DEFAULTS

    fyno = namespace.get("FYNO")
    if isinstance(fyno, dict):
        unknown = sorted(set(fyno) - set(DEFAULTS))
        assert not unknown, f"{block.where}: FYNO has unknown settings {unknown}"
    schedule = namespace.get("CELERY_BEAT_SCHEDULE")
    if isinstance(schedule, dict):
        tasks = {sync.SYNC_JOB, sync.DELETE_JOB, sync.SWEEP_JOB, outbox.DRAIN_JOB, outbox.SWEEP_JOB}
        named = {entry["task"] for entry in schedule.values()}
        assert named <= tasks, f"{block.where}: no such task {sorted(named - tasks)}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("block", PYTHON_TO_RUN, ids=lambda b: b.where)
def test_python_block_runs(block: Block, fyno_emulator: Any) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_block_{block.line}"}
    code = compile(block.source, block.where, "exec")
    with _a_copy_of_the_admin_site() as site:
        try:
            exec(code, namespace)  # noqa: S102 - the documentation's own code
        finally:
            _disconnect_receivers(namespace)
        errors = [e for model_admin in site._registry.values() for e in model_admin.check()]
    assert not [e for e in errors if e.is_serious()], f"{block.where}: admin checks: {errors}"
    _check_settings(block, namespace)


@pytest.mark.parametrize("block", SHELL_TO_RUN, ids=lambda b: b.where)
def test_shell_block_runs(block: Block, tmp_path: Path) -> None:
    # `python` is this interpreter; the project is importable from the working directory.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = "set -euo pipefail\n" + "\n".join(block.commands()) + "\n"
    done = subprocess.run(  # noqa: S603
        ["bash", "-c", script],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, textwrap.dedent(
        f"""\
        {block.where} exited with status {done.returncode}
        stdout: {done.stdout[-2000:]}
        stderr: {done.stderr[-2000:]}"""
    )
