"""get_client(): the one seam to Fyno, its per-tenant resolver and its client cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings

from django_fyno import clients
from django_fyno.client import FynoClient
from django_fyno.clients import get_client, get_config, reset_clients
from django_fyno.exceptions import FynoAuthError, FynoConfigurationError
from django_fyno.testing import FynoEmulatorHandle

SECRET = "sk-DISTINCTIVE-secret-4242"
BASE = {"WSID": "FYTEST", "API_KEY": "test-api-key", "VERSION": "test"}

# What the resolvers below were called with (reset by the autouse fixture).
resolver_calls: list[Any] = []


def tenant_resolver(user: Any) -> Any:
    """A CLIENT_RESOLVER: each user carries its tenant's workspace."""
    resolver_calls.append(user)
    return user.workspace


def returns_none(user: Any) -> None:
    return None


NOT_CALLABLE = {"WSID": "FY"}


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    reset_clients()
    resolver_calls.clear()
    yield
    reset_clients()


def _user(**workspace: str) -> SimpleNamespace:
    return SimpleNamespace(username="ada", workspace=workspace)


def _resolver_settings(**extra: Any) -> dict[str, Any]:
    return {**BASE, "CLIENT_RESOLVER": f"{__name__}.tenant_resolver", **extra}


# -- the default workspace ------------------------------------------------------------


def test_same_settings_give_the_same_client() -> None:
    client = get_client()
    assert isinstance(client, FynoClient)
    assert get_client() is client
    assert get_client(user=_user()) is client  # no resolver: every user shares it


def test_client_uses_the_configured_workspace() -> None:
    with override_settings(
        FYNO={
            **BASE,
            "ENDPOINT": "http://fyno.invalid/v1/",
            "READ_TIMEOUT": 7,
            "RETRY": {"MAX_ATTEMPTS": 2},
        }
    ):
        config = get_client().config
    assert (config.wsid, config.version, config.endpoint) == (
        "FYTEST",
        "test",
        "http://fyno.invalid/v1",
    )
    assert config.read_timeout == 7.0
    assert config.retry.max_attempts == 2
    assert config.retry.backoff_max == 30.0  # the other RETRY defaults are kept


def test_override_settings_gives_a_different_client() -> None:
    outside = get_client()
    with override_settings(FYNO={**BASE, "VERSION": "live"}):
        inside = get_client()
        assert inside.config.version == "live"
    assert inside is not outside
    # Leaving the override resets the cache too: no client outlives its settings.
    assert get_client() is not outside
    assert get_client().config.version == "test"


def test_changing_fyno_closes_cached_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[FynoClient] = []
    monkeypatch.setattr(FynoClient, "close", lambda self: closed.append(self))
    client = get_client()
    with override_settings(FYNO={**BASE, "VERSION": "live"}):
        assert closed == [client]


def test_unrelated_setting_changes_keep_the_client() -> None:
    client = get_client()
    with override_settings(USE_TZ=False):
        assert get_client() is client


def test_concurrent_first_calls_build_one_client() -> None:
    barrier = threading.Barrier(8)
    seen: list[FynoClient] = []

    def call() -> None:
        barrier.wait()
        seen.append(get_client())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert len({id(client) for client in seen}) == 1


def test_cache_is_keyed_on_a_digest_not_the_key() -> None:
    with override_settings(FYNO={**BASE, "API_KEY": SECRET}):
        get_client()
        keys = list(clients._clients)
    assert keys
    assert SECRET not in repr(keys)


def test_missing_credentials_raise_a_configuration_error() -> None:
    with override_settings(FYNO={"WSID": "FYTEST"}), pytest.raises(FynoConfigurationError) as exc:
        get_client()
    assert "api_key" in str(exc.value)


def test_default_client_talks_to_the_emulator(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO={**BASE, "ENDPOINT": fyno_emulator.endpoint}):
        get_client().create_profile("U1", name="Ada")
        assert get_client().get_profile("U1").name == "Ada"
    assert fyno_emulator.emulator.profile("test", "U1") is not None


# -- the tenant resolver --------------------------------------------------------------


def test_resolver_is_called_with_the_user_and_its_workspace_used(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    ada = _user(
        WSID=fyno_emulator.wsid, API_KEY=fyno_emulator.api_key, ENDPOINT=fyno_emulator.endpoint
    )
    with override_settings(FYNO=_resolver_settings(ENDPOINT="http://unused.invalid/v1")):
        client = get_client(ada)
        assert resolver_calls == [ada]
        assert client.config.wsid == fyno_emulator.wsid
        assert client.config.endpoint == fyno_emulator.endpoint
        assert client.config.version == "test"  # VERSION left out: the project's
        client.create_profile("ada", name="Ada")
        assert get_client(ada) is client  # the resolver runs again, the client is reused
    assert len(resolver_calls) == 2
    assert fyno_emulator.emulator.profile("test", "ada") is not None
    assert [entry.path for entry in fyno_emulator.requests] == ["/FYTEST/test/profiles"]


def test_each_tenant_gets_its_own_workspace(fyno_emulator: FynoEmulatorHandle) -> None:
    home = _user(
        WSID=fyno_emulator.wsid, API_KEY=fyno_emulator.api_key, ENDPOINT=fyno_emulator.endpoint
    )
    other = _user(WSID="FYOTHER", API_KEY=SECRET, ENDPOINT=fyno_emulator.endpoint, VERSION="live")
    with override_settings(FYNO=_resolver_settings()):
        home_client, other_client = get_client(home), get_client(other)
        assert home_client is not other_client
        assert (other_client.config.wsid, other_client.config.version) == ("FYOTHER", "live")
        home_client.create_profile("U1")
        # The emulator only knows FYTEST: the other tenant's request reached FYOTHER.
        with pytest.raises(FynoAuthError):
            other_client.get_profile("U1")
    assert [(entry.path, entry.status) for entry in fyno_emulator.requests] == [
        ("/FYTEST/test/profiles", 201),
        ("/FYOTHER/live/profiles/U1", 401),
    ]


def test_resolver_may_be_a_callable() -> None:
    def resolver(user: Any) -> dict[str, str]:
        return {"WSID": f"FY{user}", "API_KEY": SECRET}

    with override_settings(FYNO={**BASE, "CLIENT_RESOLVER": resolver}):
        assert get_client("A").config.wsid == "FYA"
        assert get_client("B").config.wsid == "FYB"
        assert get_client("A") is get_client("A")


def test_resolver_path_is_read_when_used() -> None:
    config = get_config()
    with override_settings(FYNO=_resolver_settings()):
        resolved = get_config(_user(WSID="FYLATE", API_KEY=SECRET))
    assert (config.wsid, resolved.wsid) == ("FYTEST", "FYLATE")


@pytest.mark.parametrize(
    ("resolver", "message"),
    [
        ("tests.no_such_module.resolver", "cannot be imported"),
        (f"{__name__}.no_such_function", "cannot be imported"),
        (f"{__name__}.NOT_CALLABLE", "is not callable"),
        (42, "must be a dotted path or a callable"),
    ],
)
def test_bad_resolver_setting_raises(resolver: Any, message: str) -> None:
    with (
        override_settings(FYNO={**BASE, "API_KEY": SECRET, "CLIENT_RESOLVER": resolver}),
        pytest.raises(FynoConfigurationError, match=message) as exc,
    ):
        get_client(_user())
    assert "CLIENT_RESOLVER" in str(exc.value)
    assert SECRET not in str(exc.value)


@pytest.mark.parametrize(
    ("workspace", "message"),
    [
        ({"WSID": "FY1"}, "returned no API_KEY"),
        ({"API_KEY": SECRET}, "returned no WSID"),
        ({"WSID": "FY1", "API_KEY": SECRET, "KEY": SECRET}, r"unknown keys \['KEY'\]"),
        ({"WSID": "FY1", "API_KEY": 42}, "invalid API_KEY"),
        ({"WSID": "", "API_KEY": SECRET}, "invalid WSID"),
        ({"WSID": "FY1", "API_KEY": SECRET, "VERSION": "prod"}, "'live' or 'test'"),
        ({"WSID": "FY1", "API_KEY": SECRET, "ENDPOINT": "ftp://x"}, "http"),
        ({"WSID": "FY1", "API_KEY": SECRET + " x"}, "printable ASCII"),
        ([SECRET], "must return a dict"),
        (SECRET, "must return a dict"),
    ],
)
def test_bad_resolver_answer_raises_without_the_key(workspace: Any, message: str) -> None:
    user = SimpleNamespace(workspace=workspace)
    with (
        override_settings(FYNO=_resolver_settings()),
        pytest.raises(FynoConfigurationError, match=message) as exc,
    ):
        get_client(user)
    assert SECRET not in str(exc.value)
    assert SECRET not in repr(exc.value)


def test_resolver_returning_none_is_an_error() -> None:
    # Falling back to the project's workspace could send a tenant's mail from another's.
    with (
        override_settings(FYNO={**BASE, "CLIENT_RESOLVER": f"{__name__}.returns_none"}),
        pytest.raises(FynoConfigurationError, match="must return a dict"),
    ):
        get_client(_user())


def test_the_key_is_not_in_the_client_or_config_repr() -> None:
    with override_settings(FYNO=_resolver_settings()):
        client = get_client(_user(WSID="FY1", API_KEY=SECRET))
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.config)


# -- a workspace a stored row recorded --------------------------------------------------


KEYS = {"FYA": "key-a", "FYB": "key-b"}


def workspace_resolver(user: Any = None, *, workspace: Any = None) -> Any:
    if workspace is not None:
        resolver_calls.append(workspace)
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    return {"WSID": "FYA", "API_KEY": KEYS["FYA"]}


def answers_for_another(user: Any = None, *, workspace: Any = None) -> Any:
    return {"WSID": "FYOTHER", "API_KEY": "k"}


def moved_endpoint_resolver(user: Any = None, *, workspace: Any = None) -> Any:
    return {"WSID": "FYB", "API_KEY": "key-b", "ENDPOINT": "https://eu.fyno.example/v1/"}


def test_a_stored_workspace_gets_its_own_credentials_from_the_resolver() -> None:
    # Recorded when it was reached elsewhere: it is reached where it is now.
    stored = clients.Workspace("FYB", "test", "http://127.0.0.1:9/v1")
    with override_settings(FYNO={**BASE, "CLIENT_RESOLVER": f"{__name__}.workspace_resolver"}):
        client = clients.client_for(stored)
        assert (client.config.wsid, client.config.endpoint) == ("FYB", "https://api.fyno.io/v1")
        assert client.config.version == "test"
        assert client.config.api_key == "key-b"
        assert resolver_calls == [stored]
        assert clients.workspace_for(None) == clients.Workspace(
            "FYA", "test", "https://api.fyno.io/v1"
        )


@pytest.mark.parametrize(
    ("resolver", "wsid", "message"),
    [
        ("workspace_resolver", "FYGONE", "workspace FYGONE can no longer be resolved"),
        ("answers_for_another", "FYB", "answered for workspace FYOTHER"),
    ],
)
def test_a_stored_workspace_that_cannot_be_resolved_is_never_sent_elsewhere(
    resolver: str, wsid: str, message: str
) -> None:
    stored = clients.Workspace(wsid, "test", "https://api.fyno.io/v1")
    with (
        override_settings(FYNO={**BASE, "CLIENT_RESOLVER": f"{__name__}.{resolver}"}),
        pytest.raises(clients.WorkspaceUnavailable, match=message),
    ):
        clients.client_for(stored)


def test_a_stored_workspace_is_reached_at_the_endpoint_the_resolver_gives() -> None:
    stored = clients.Workspace("FYB", "live", "http://127.0.0.1:9/v1")
    resolver = f"{__name__}.moved_endpoint_resolver"
    with override_settings(FYNO={**BASE, "CLIENT_RESOLVER": resolver}):
        config = clients.client_for(stored).config
    assert (config.wsid, config.version, config.endpoint) == (
        "FYB",
        "live",  # the row's version, whatever the resolver's default
        "https://eu.fyno.example/v1",
    )


def test_without_a_resolver_a_stored_workspace_is_reached_at_the_settings_endpoint() -> None:
    stored = clients.Workspace("FYTEST", "live", "http://127.0.0.1:9/v1")
    with override_settings(FYNO={**BASE, "ENDPOINT": "https://proxy.example/fyno/v1"}):
        config = clients.client_for(stored).config
    assert (config.wsid, config.version, config.endpoint) == (
        "FYTEST",
        "live",
        "https://proxy.example/fyno/v1",
    )


def test_the_same_workspace_at_another_endpoint_is_the_same_workspace() -> None:
    here = clients.Workspace("FYA", "test", "https://api.fyno.io/v1")
    assert here.same_workspace(clients.Workspace("FYA", "test", "http://127.0.0.1:8765/v1"))
    assert not here.same_workspace(clients.Workspace("FYA", "live", "https://api.fyno.io/v1"))
    assert not here.same_workspace(clients.Workspace("FYB", "test", "https://api.fyno.io/v1"))
    assert not here.same_workspace(None)


def test_without_a_resolver_only_the_settings_workspace_resolves() -> None:
    with override_settings(FYNO=BASE):
        ours = clients.client_for(clients.Workspace("FYTEST", "live", "http://127.0.0.1:9/v1"))
        assert (ours.config.version, ours.config.endpoint) == ("live", "https://api.fyno.io/v1")
        with pytest.raises(clients.WorkspaceUnavailable, match="FYNO\\['WSID'\\] is now FYTEST"):
            clients.client_for(clients.Workspace("FYOLD", "test", "https://api.fyno.io/v1"))
        with pytest.raises(clients.WorkspaceUnavailable, match="records no Fyno workspace"):
            clients.client_for(clients.Workspace("", "", ""))


def test_a_resolver_without_the_workspace_keyword_is_a_clear_error() -> None:
    with (
        override_settings(FYNO=_resolver_settings()),
        pytest.raises(FynoConfigurationError, match="must accept a `workspace` keyword"),
    ):
        clients.client_for(clients.Workspace("FY1", "test", "https://api.fyno.io/v1"))


def test_a_pool_size_gives_a_client_with_that_many_connections() -> None:
    workspace = clients.default_workspace()
    assert clients.client_for(workspace, pool_size=32).config.pool_size == 32
    assert clients.client_for(workspace, pool_size=32) is clients.client_for(
        workspace, pool_size=32
    )
    assert clients.client_for(workspace) is not clients.client_for(workspace, pool_size=32)
