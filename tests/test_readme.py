"""CI must run the very command README.md gives users."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"## Run the tests.*?```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) == 1, "README.md must have one test command under 'Run the tests'"
    command = blocks[0].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
