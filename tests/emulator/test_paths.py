"""Where the emulator answers the Fyno API: under the mount it prints, as Fyno
answers only under ``/v1``, and with one trailing slash ignored, as Fyno's
Express routing ignores it (Fyno's Node SDK sends ``POST .../profiles/``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from django_fyno.emulator.app import Emulator
from django_fyno.emulator.live import LiveEmulator
from django_fyno.emulator.responses_adapter import EmulatorMock

AUTH = {"Authorization": "Bearer test-api-key"}


@dataclass
class Served:
    emulator: Emulator
    url: str  # the root: the control API is under it
    endpoint: str  # the mount the emulator prints (url + "/v1")


@pytest.fixture(params=["in_process", "http"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    emulator = Emulator(seed=3)
    if request.param == "in_process":
        with EmulatorMock(emulator) as mocked:
            yield Served(emulator, mocked.url, mocked.endpoint)
    else:
        with LiveEmulator(emulator) as live:
            yield Served(emulator, live.url, live.endpoint)


def test_a_trailing_slash_is_ignored_on_every_api_path(served: Served) -> None:
    api = f"{served.endpoint}/FYTEST/live"
    created = requests.post(f"{api}/profiles/", json={"distinct_id": "U1"}, headers=AUTH, timeout=5)
    assert created.status_code == 201, created.text
    assert served.emulator.profile("live", "U1") is not None
    fetched = requests.get(f"{api}/profiles/U1/", headers=AUTH, timeout=5)
    assert (fetched.status_code, fetched.json()["distinct_id"]) == (200, "U1")
    event = {"event": "welcome", "distinct_id": "U1", "to": {"email": "u1@example.com"}}
    assert requests.post(f"{api}/event/", json=event, headers=AUTH, timeout=5).status_code == 202
    suppressions = f"{served.endpoint}/FYTEST/suppressions/"
    assert requests.get(suppressions, headers=AUTH, timeout=5).status_code == 200
    # The literal segment still wins over a distinct id called "delete".
    deleted = requests.post(
        f"{api}/profiles/delete/", json={"distinct_id": ["U1"]}, headers=AUTH, timeout=5
    )
    assert deleted.status_code == 200
    assert served.emulator.profile("live", "U1") is None
    # One slash only, as Express: two are no path of the API.
    twice = requests.post(f"{api}/profiles//", json={"distinct_id": "U2"}, headers=AUTH, timeout=5)
    assert twice.status_code == 404
    assert served.emulator.profile("live", "U2") is None


def test_the_api_is_not_served_outside_the_mount_it_prints(served: Served) -> None:
    # A client whose base URL lost /v1 (or doubled it) gets Fyno's 404 here
    # too, and nothing is created.
    assert served.endpoint == served.url + "/v1"
    for base in (served.url, f"{served.endpoint}/v1"):
        reply = requests.post(
            f"{base}/FYTEST/live/profiles", json={"distinct_id": "U1"}, headers=AUTH, timeout=5
        )
        path = base.removeprefix(served.url) + "/FYTEST/live/profiles"
        assert reply.status_code == 404, base
        assert reply.json() == {"_message": f"Cannot POST {path}", "status": "error"}
    assert served.emulator.profiles("live") == {}
    [outside, doubled] = served.emulator.request_log
    assert (outside.path, outside.operation, outside.status) == ("/FYTEST/live/profiles", None, 404)
    assert (doubled.path, doubled.operation, doubled.status) == (
        "/v1/FYTEST/live/profiles",
        None,
        404,
    )
    # Under the mount, and the control API at the root, answer as before.
    reply = requests.post(
        f"{served.endpoint}/FYTEST/live/profiles",
        json={"distinct_id": "U1"},
        headers=AUTH,
        timeout=5,
    )
    assert reply.status_code == 201
    assert requests.get(f"{served.url}/_emulator/health", timeout=5).status_code == 200
