"""Every setting has its entry in docs/settings.md."""

from pathlib import Path

import pytest

from django_fyno.conf import DEFAULTS

SETTINGS_DOC = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_setting_is_documented(name: str) -> None:
    headings = [line for line in SETTINGS_DOC.splitlines() if line.startswith("### ")]
    assert any(f"`{name}`" in heading for heading in headings)
