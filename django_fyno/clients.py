"""The one seam to a Fyno workspace: which workspace a user belongs to, and its client.

A :class:`Workspace` is where a profile or a message lives: the workspace id,
the version (``live``/``test``) and the endpoint, never the API key. Rows that
talk to Fyno later (profile mirrors, outbox messages) record it when they are
written; every later call for them goes to that workspace through
:func:`client_for`. A workspace *is* its id and version: the endpoint a row
recorded says where it was sent, and :func:`client_for` reaches the workspace
where the settings (or the resolver) say it is now, so changing ``ENDPOINT``
neither strands rows at the old address nor counts as a move to another
workspace.

By default every user belongs to the workspace configured in ``settings.FYNO``.
A project with one Fyno workspace per tenant names a resolver in
``FYNO["CLIENT_RESOLVER"]``; it is called in two ways::

    def fyno_workspace(user=None, *, workspace=None):
        if workspace is not None:  # credentials for a workspace a row recorded
            tenant = Tenant.objects.filter(fyno_wsid=workspace.wsid).first()
            return None if tenant is None else {"WSID": tenant.fyno_wsid,
                                                "API_KEY": tenant.fyno_api_key}
        tenant = user.tenant if user is not None else current_tenant()
        return {"WSID": tenant.fyno_wsid, "API_KEY": tenant.fyno_api_key}

    FYNO = {..., "CLIENT_RESOLVER": "myproject.fyno.fyno_workspace"}

Clients hold a pooled HTTP session, so they are built once per distinct
configuration and shared by all threads. :func:`reset_clients` closes them;
it runs whenever ``settings.FYNO`` changes (``override_settings`` in tests).
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.client.exceptions import FynoConfigurationError
from django_fyno.conf import fyno_settings

__all__ = [
    "Workspace",
    "WorkspaceUnavailable",
    "client_for",
    "default_workspace",
    "get_client",
    "get_config",
    "reset_clients",
    "workspace_for",
    "workspaces_for",
]

# Keys a CLIENT_RESOLVER's dict may hold; the first two are required.
RESOLVER_KEYS = ("WSID", "API_KEY", "VERSION", "ENDPOINT")

_CacheKey = tuple[Any, ...]
_clients: dict[_CacheKey, FynoClient] = {}
_lock = threading.Lock()


class WorkspaceUnavailable(FynoConfigurationError):
    """No credentials can be had for a workspace a row recorded.

    The row is never sent elsewhere instead: it fails with this message.
    """


@dataclass(frozen=True)
class Workspace:
    """A Fyno workspace as rows record it: id, version and endpoint (never the key)."""

    wsid: str
    version: str
    endpoint: str

    @property
    def key(self) -> str:
        """One string for the workspace: task arguments, cache keys, grouping."""
        return f"{self.wsid}|{self.version}|{self.endpoint}"

    @classmethod
    def from_key(cls, key: str) -> Workspace:
        wsid, version, endpoint = key.split("|", 2)
        return cls(wsid, version, endpoint)

    @classmethod
    def of(cls, row: Any) -> Workspace:
        """The workspace a model row (FynoProfile, FynoOutbox) recorded."""
        return cls(row.wsid, row.version, row.endpoint)

    def same_workspace(self, other: Workspace | None) -> bool:
        """Whether ``other`` is this workspace, perhaps reached at another endpoint."""
        return other is not None and (self.wsid, self.version) == (other.wsid, other.version)

    def fields(self) -> dict[str, str]:
        """The model fields recording this workspace on a row."""
        return {"wsid": self.wsid, "version": self.version, "endpoint": self.endpoint}

    def __str__(self) -> str:
        return f"{self.wsid} ({self.version})"


def _retry_policy() -> RetryPolicy:
    retry = fyno_settings.RETRY
    return RetryPolicy(
        max_attempts=retry["MAX_ATTEMPTS"],
        backoff_base=retry["BACKOFF_BASE"],
        backoff_max=retry["BACKOFF_MAX"],
        deadline=retry["DEADLINE"],
    )


def _resolver() -> Callable[..., Any] | None:
    """The configured CLIENT_RESOLVER callable, imported now (settings may have changed)."""
    path = fyno_settings.CLIENT_RESOLVER
    if path is None:
        return None
    if callable(path):
        return path  # type: ignore[no-any-return]
    try:
        found = import_string(path)
    except ImportError as exc:
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {path!r} cannot be imported: {exc}"
        ) from exc
    if not callable(found):
        raise FynoConfigurationError(f"FYNO['CLIENT_RESOLVER'] {path!r} is not callable")
    return found  # type: ignore[no-any-return]


def _name(resolver: Callable[..., Any]) -> str:
    return getattr(resolver, "__qualname__", repr(resolver))


@dataclass(frozen=True)
class _Answer:
    """A resolver's answer, checked. Like every object here holding a key, its repr
    hides it: tracebacks show the variables of their frames (Django's debug page
    with ``DEBUG = True``, error e-mails), and these objects are such variables."""

    wsid: str
    api_key: str = field(repr=False)
    version: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class _Credentials:
    """A workspace and its API key, on their way to a :class:`FynoConfig`."""

    workspace: Workspace
    api_key: str = field(repr=False)


class _Refused(Exception):
    """A resolver's answer is unusable; the message names keys and types, never values."""


def _parse(resolved: Any) -> _Answer:
    if not isinstance(resolved, Mapping):
        raise _Refused(f"must return a dict with WSID and API_KEY, not {type(resolved).__name__}")
    unknown = sorted(str(key) for key in resolved if key not in RESOLVER_KEYS)
    if unknown:
        raise _Refused(f"returned unknown keys {unknown}; expected {', '.join(RESOLVER_KEYS)}")
    answer: dict[str, str] = {}
    for key in RESOLVER_KEYS:
        required = key in ("WSID", "API_KEY")
        if key not in resolved or resolved[key] is None:
            if required:
                raise _Refused(f"returned no {key}")
            continue
        if not isinstance(resolved[key], str) or not resolved[key]:
            raise _Refused(f"returned an invalid {key}: it must be a non-empty string")
        answer[key] = resolved[key]
    return _Answer(answer["WSID"], answer["API_KEY"], answer.get("VERSION"), answer.get("ENDPOINT"))


# The resolver hands out keys: in error reports (DEBUG = False) the variables of
# its frames, and of this one, are hidden.
@sensitive_variables()
def _ask(resolver: Callable[..., Any], user: Any, **kwargs: Any) -> _Answer | None:
    """Call the resolver and check its answer (None stays None).

    A refused answer raises :class:`FynoConfigurationError` from this frame, once
    it no longer holds the answer, and not chained to the error that found it.
    """
    resolved = resolver(user, **kwargs)
    if resolved is None:
        return None
    try:
        return _parse(resolved)
    except _Refused as refused:
        problem = str(refused)
    del resolved
    raise FynoConfigurationError(f"FYNO['CLIENT_RESOLVER'] {_name(resolver)} {problem}")


def _settings_workspace() -> Workspace:
    return Workspace(fyno_settings.WSID, fyno_settings.VERSION.value, fyno_settings.ENDPOINT)


def _resolve_user(user: Any) -> _Credentials:
    """The workspace of ``user`` (None: the project's) and its API key."""
    resolver = _resolver()
    if resolver is None:
        return _Credentials(_settings_workspace(), fyno_settings.API_KEY)
    answer = _ask(resolver, user)
    if answer is None:
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {_name(resolver)} must return a dict with WSID and "
            "API_KEY, not NoneType"
        )
    if answer.version not in (None, "live", "test"):
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {_name(resolver)} returned an invalid VERSION: "
            "it must be 'live' or 'test'"
        )
    workspace = Workspace(
        answer.wsid,
        answer.version or fyno_settings.VERSION.value,
        (answer.endpoint or fyno_settings.ENDPOINT).rstrip("/"),
    )
    return _Credentials(workspace, answer.api_key)


def _accepts_workspace(resolver: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(resolver).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: assume it does
        return True
    return any(
        parameter.name == "workspace" or parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in parameters
    )


def _credentials_for(workspace: Workspace) -> _Credentials:
    """The API key of a workspace a row recorded; raises WorkspaceUnavailable."""
    if not workspace.wsid:
        raise WorkspaceUnavailable("the row records no Fyno workspace")
    resolver = _resolver()
    if resolver is None:
        if workspace.wsid != fyno_settings.WSID:
            raise WorkspaceUnavailable(
                f"workspace {workspace.wsid} can no longer be resolved: FYNO['WSID'] is now "
                f"{fyno_settings.WSID or '(empty)'} and no CLIENT_RESOLVER is set"
            )
        # The endpoint is where the workspace is reached today, not where a row was sent.
        return _Credentials(
            replace(workspace, endpoint=fyno_settings.ENDPOINT), fyno_settings.API_KEY
        )
    if not _accepts_workspace(resolver):
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {_name(resolver)} must accept a `workspace` keyword "
            "argument, to give the credentials of a workspace a stored row belongs to "
            "(see docs/settings.md)"
        )
    answer = _ask(resolver, None, workspace=workspace)
    if answer is None:
        raise WorkspaceUnavailable(
            f"workspace {workspace.wsid} can no longer be resolved: "
            f"FYNO['CLIENT_RESOLVER'] {_name(resolver)} returned None for it"
        )
    if answer.wsid != workspace.wsid:
        raise WorkspaceUnavailable(
            f"workspace {workspace.wsid} can no longer be resolved: "
            f"FYNO['CLIENT_RESOLVER'] {_name(resolver)} answered for workspace {answer.wsid}"
        )
    endpoint = (answer.endpoint or fyno_settings.ENDPOINT).rstrip("/")
    return _Credentials(replace(workspace, endpoint=endpoint), answer.api_key)


def _config(credentials: _Credentials, pool_size: int | None) -> FynoConfig:
    workspace = credentials.workspace
    try:
        return FynoConfig(
            wsid=workspace.wsid,
            api_key=credentials.api_key,
            version=workspace.version,
            endpoint=workspace.endpoint,
            connect_timeout=fyno_settings.CONNECT_TIMEOUT,
            read_timeout=fyno_settings.READ_TIMEOUT,
            retry=_retry_policy(),
            **({} if pool_size is None else {"pool_size": max(pool_size, 1)}),
        )
    except FynoConfigurationError as exc:
        # Its messages never hold the key, but FynoConfig's frames (below this one)
        # hold it in a variable: raise it from here, without them.
        raise exc.with_traceback(None) from None
    except (TypeError, ValueError) as exc:
        raise FynoConfigurationError(f"Fyno settings are invalid: {exc}") from None


def workspace_for(user: Any = None) -> Workspace:
    """The workspace ``user``'s profile and messages belong to (None: the project's)."""
    return _resolve_user(user).workspace


def workspaces_for(users: list[Any]) -> list[Workspace]:
    """:func:`workspace_for` of each user, in order (the settings are read once)."""
    if _resolver() is None:
        return [_settings_workspace()] * len(users)
    return [workspace_for(user) for user in users]


def default_workspace() -> Workspace:
    """The project's workspace: ``workspace_for(None)``."""
    return workspace_for(None)


def get_config(user: Any = None) -> FynoConfig:
    """The :class:`FynoConfig` ``get_client(user)`` uses (built fresh, not cached).

    Raises :class:`FynoConfigurationError` when the settings or the resolver's
    answer are unusable.
    """
    return _config(_resolve_user(user), None)


def _cached(config: FynoConfig) -> FynoClient:
    # A digest, not the key: the cache must not be one more place a key can leak from.
    key = (
        config.wsid,
        hashlib.sha256(config.api_key.encode()).hexdigest(),
        config.version,
        config.endpoint,
        config.connect_timeout,
        config.read_timeout,
        config.retry,
        config.pool_size,
    )
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        # Another thread may have built it while this one waited.
        client = _clients.get(key)
        if client is None:
            client = FynoClient(config=config)
            _clients[key] = client
    return client


def get_client(user: Any = None) -> FynoClient:
    """The client for ``user``'s workspace (None: the project's), reused across calls.

    With ``FYNO["CLIENT_RESOLVER"]`` set, the resolver is called with ``user``
    on every call (it is cheap; the client behind it is cached).
    """
    return _cached(get_config(user))


def client_for(workspace: Workspace, *, pool_size: int | None = None) -> FynoClient:
    """The client for a workspace a row recorded, with that workspace's credentials.

    Raises :class:`WorkspaceUnavailable` when no credentials can be had for it
    (never a client for another workspace). ``pool_size`` asks for at least
    that many pooled connections (one per thread that shares the client).
    """
    return _cached(_config(_credentials_for(workspace), pool_size))


def reset_clients() -> None:
    """Close and forget every cached client; the next :func:`get_client` builds anew."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


@receiver(setting_changed, dispatch_uid="django_fyno.clients.reset_on_fyno_change")
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings(FYNO=...) must not hand tests a client built for other settings.
    if setting == "FYNO":
        reset_clients()
