"""Configuration, the generated timezone list, the operation table, the contract check."""

from __future__ import annotations

import pytest
import responses

from django_fyno.client import (
    FynoClient,
    FynoConfig,
    FynoConfigurationError,
    RetryPolicy,
)
from django_fyno.client.operations import OPERATIONS
from django_fyno.client.timezones import TIMEZONES
from django_fyno.emulator import contract

from .conftest import BASE, SECRET, ack, contract_problems


def test_timezones_match_the_contract():
    assert contract.timezones() == TIMEZONES
    assert len(TIMEZONES) == 594


def test_operations_match_the_contract():
    assert {name: (op.method, op.template) for name, op in OPERATIONS.items()} == (
        contract.OPERATIONS
    )
    assert all(callable(getattr(FynoClient, name)) for name in contract.OPERATIONS)


def test_from_env():
    config = FynoConfig.from_env(
        {
            "FYNO_WSID": "FY1",
            "FYNO_API_KEY": SECRET,
            "FYNO_VERSION": "test",
            "FYNO_ENDPOINT": "http://localhost:8000/v1/",
        }
    )
    assert (config.wsid, config.api_key, config.version) == ("FY1", SECRET, "test")
    assert config.endpoint == "http://localhost:8000/v1"
    assert SECRET not in repr(config)


def test_from_env_defaults():
    config = FynoConfig.from_env({"FYNO_WSID": "FY1", "FYNO_API_KEY": SECRET})
    assert config.version == "live"
    assert config.endpoint == "https://api.fyno.io/v1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"wsid": " "},
        {"api_key": ""},
        {"api_key": "two words"},
        {"version": "prod"},
        {"endpoint": "ftp://api.fyno.io"},
        {"read_timeout": 0},
    ],
)
def test_bad_config_is_refused(overrides: dict[str, object]):
    settings: dict[str, object] = {"wsid": "FY1", "api_key": SECRET, **overrides}
    with pytest.raises(FynoConfigurationError) as caught:
        FynoConfig(**settings)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


def test_bad_retry_policy_is_refused():
    with pytest.raises(FynoConfigurationError):
        RetryPolicy(max_attempts=0)


def test_client_takes_a_config_or_keywords_not_both():
    config = FynoConfig(wsid="FY1", api_key=SECRET)
    with FynoClient(config=config) as fyno:
        assert fyno.config is config
        assert SECRET not in repr(fyno)
        assert SECRET not in str(fyno)
    with pytest.raises(FynoConfigurationError):
        FynoClient(config=config, wsid="FY2")
    with pytest.raises(FynoConfigurationError):
        FynoClient(wsid="FY1")


@pytest.mark.contract_violation_expected
def test_the_contract_check_catches_a_bad_reply(client: FynoClient, mocked: responses.RequestsMock):
    # A profile reply missing its required fields: the autouse check would fail this test.
    mocked.get(f"{BASE}/profiles/U1", json=ack("not a profile"))
    client.get_profile("U1")
    problems = contract_problems(mocked)
    assert any("reply 200" in problem for problem in problems)
