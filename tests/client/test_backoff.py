"""full_jitter: the one backoff formula, and the client's waits coming from it."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import responses

import django_fyno.client
from django_fyno.client import FynoClient, FynoServerError, RetryPolicy, full_jitter
from django_fyno.client.backoff import full_jitter as defined_full_jitter

from .conftest import BASE, SECRET, WSID, FakeTime, error


def always(value: float) -> Callable[[], float]:
    return lambda: value


def test_it_is_exported_from_the_client_package() -> None:
    assert full_jitter is defined_full_jitter
    assert "full_jitter" in django_fyno.client.__all__


@pytest.mark.parametrize("failures", [0, -1, -(10**6)])
def test_no_failure_means_no_wait(failures: int) -> None:
    assert full_jitter(failures, base=0.5, cap=30.0, random=always(1.0)) == 0.0


def test_the_ceiling_doubles_from_base_up_to_cap() -> None:
    ceilings = [full_jitter(n, base=0.5, cap=30.0, random=always(1.0)) for n in range(1, 9)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_the_wait_is_random_times_the_ceiling() -> None:
    assert full_jitter(3, base=0.5, cap=30.0, random=always(0.25)) == 0.5
    assert full_jitter(3, base=0.5, cap=30.0, random=always(0.0)) == 0.0


def test_default_random_stays_within_zero_and_the_ceiling() -> None:
    waits = [full_jitter(4, base=1.0, cap=5.0) for _ in range(500)]
    assert all(0.0 <= wait <= 5.0 for wait in waits)
    assert len(set(waits)) > 1  # jittered, not a constant


@pytest.mark.parametrize("failures", [1025, 10**6, 10**30])
def test_huge_failure_counts_give_the_cap_without_overflow(failures: int) -> None:
    assert full_jitter(failures, base=0.5, cap=30.0, random=always(1.0)) == 30.0


def test_a_zero_base_or_cap_never_waits() -> None:
    assert full_jitter(10**6, base=0.0, cap=30.0, random=always(1.0)) == 0.0
    assert full_jitter(5, base=0.5, cap=0.0, random=always(1.0)) == 0.0


@pytest.mark.parametrize(
    ("base", "cap"),
    [(math.nan, 30.0), (0.5, math.nan), (math.inf, 30.0), (0.5, math.inf), (-1.0, 30.0)],
)
def test_non_finite_or_negative_base_and_cap_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="finite number"):
        full_jitter(2, base=base, cap=cap, random=always(0.5))


@pytest.mark.parametrize("draw", [math.nan, -0.1, 1.5, math.inf])
def test_a_random_source_outside_zero_one_is_refused(draw: float) -> None:
    with pytest.raises(ValueError, match=r"random\(\) must return"):
        full_jitter(2, base=0.5, cap=30.0, random=always(draw))


def test_the_client_waits_exactly_what_full_jitter_gives(
    fake_time: FakeTime, mocked: responses.RequestsMock
) -> None:
    policy = RetryPolicy(
        max_attempts=5,
        backoff_base=0.3,
        backoff_max=1.0,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        random=random.Random(7).random,
    )
    mocked.put(f"{BASE}/profiles/U1", json=error("down"), status=500)
    with (
        FynoClient(
            wsid=WSID, api_key=SECRET, endpoint="https://api.fyno.io/v1", retry=policy
        ) as fyno,
        pytest.raises(FynoServerError),
    ):
        fyno.update_profile("U1", name="Ada")
    same_draws = random.Random(7).random
    expected = [full_jitter(n, 0.3, 1.0, same_draws) for n in range(1, 5)]
    assert fake_time.sleeps == expected
    assert len(mocked.calls) == 5
