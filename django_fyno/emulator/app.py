"""The emulator's WSGI application: a stateful stand-in for the Fyno API.

Interface other parts rely on (keep it stable):

- ``Emulator(wsid=..., api_key=..., *, events=None, strict_replies=True)`` is a
  WSGI callable serving the Fyno API at its mount point (the path it sees
  starts with ``/{WSID}/...``), plus the control API under ``/_emulator/``.
  Served by :mod:`.server` or :mod:`.responses_adapter`, which name their
  mount point in the environ (:data:`~.environ.MOUNT_KEY`, ``/v1`` by
  default), it answers the API only under that mount, as Fyno answers it
  only under ``/v1``: a request outside it is Fyno's 404 ``Cannot POST
  /path``. Under another WSGI server it serves the API at its SCRIPT_NAME,
  and also tolerates a leading ``/v1`` there. As Fyno (Express) does, one
  trailing slash is ignored: ``POST .../profiles/`` creates a profile.
- ``Emulator(workspaces={"FY1": "key-1", "FY2": "key-2"})`` serves several
  workspaces; the first is the default one. ``emulator.workspace("FY2")`` is
  a :class:`~.workspace.Workspace` with the same Python control API, acting
  on that workspace only.
- ``emulator.reset()`` forgets all state, faults and request logs (of every
  workspace).
- ``emulator.request_log`` is a list of :class:`LoggedRequest` (the default
  workspace's); the Python control methods (``set_fault``, ``state``...) act on
  the default workspace.
- Raising :class:`DropConnection` from the app asks the server (or the
  ``responses`` adapter) to drop the connection without an answer.

Each request is routed to a workspace by the WSID its path starts with (an
unknown WSID goes to the default workspace, which refuses it with a 401), to
a contract operation, authenticated with that workspace's key, validated
against the contract, handled (:mod:`.handlers`) under the workspace's lock,
and its reply checked against the contract when ``strict_replies`` is on.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from . import control
from .contract import Operation, find_operation, route_path, validate_reply, validate_request
from .environ import MAX_BODY, MOUNT_KEY, too_large_message
from .faults import Decision, Fault
from .handlers import HANDLERS, PROPERTY_KEYS, Ctx, precheck
from .workspace import LoggedRequest, WebhookError, Workspace, WorkspaceControls, derived_seed

__all__ = [
    "DropConnection",
    "Emulator",
    "LoggedRequest",
    "UnknownWorkspace",
    "WebhookError",
    "Workspace",
]

JSON_HEADERS = [("Content-Type", "application/json")]
_SECRET_HEADERS = frozenset({"HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_PROXY_AUTHORIZATION"})
# What every workspace is built with unless add_workspace() says otherwise.
_WORKSPACE_OPTIONS = frozenset(
    {
        "events",
        "faults",
        "seed",
        "preferences",
        "request_log_limit",
        "webhook_timeout",
        "allow_remote_webhooks",
        "auto_delivery_reports",
    }
)
# Fyno's bodies are shallow; deeper nesting is refused before it can exhaust
# the stack of the validators, the request log or json.dumps.
MAX_JSON_DEPTH = 64


class DropConnection(Exception):
    """Close the connection without writing a response (fault injection)."""


class UnknownWorkspace(LookupError):
    """No workspace of the emulator has this WSID."""


def _error(message: str) -> dict[str, str]:
    return {"_message": message, "status": "error"}


class _TooLarge(Exception):
    pass


def _read_body(environ: Mapping[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    if length > MAX_BODY:  # the emulator's server never passes one; another might
        raise _TooLarge
    data: bytes = environ["wsgi.input"].read(length)
    return data


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iterative: never recurses)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((child, depth + 1) for child in item)
    return deepest


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    """(parsed body or None, why it was refused or None)."""
    if not raw.strip():
        return None, None
    too_deep = f"Request body nests JSON deeper than {MAX_JSON_DEPTH} levels"
    try:
        parsed = json.loads(raw)
    except RecursionError:
        return None, too_deep
    except ValueError:
        return None, "Request body is not valid JSON"
    if _depth(parsed) > MAX_JSON_DEPTH:
        return None, too_deep
    return parsed, None


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    found = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_") and key not in _SECRET_HEADERS
    }
    if environ.get("CONTENT_TYPE"):
        found["Content-Type"] = str(environ["CONTENT_TYPE"])
    return found


def _request_message(op: Operation, problems: list[str]) -> str:
    """The 400 text for a request that breaks the contract."""
    key = PROPERTY_KEYS.get(op.name)
    if key is not None or op.name == "batch_properties":
        # Fyno's own wording names the offending action ($set, $add, ...).
        for problem in problems:
            action = next((part for part in problem.split("/") if part.startswith("$")), None)
            if action:
                action = action.split(":")[0]
                return f"{action} has object/keys that is not allowed"
    return "Invalid request: " + "; ".join(problems)


class Emulator(WorkspaceControls):
    """Fyno workspaces in memory, served as a WSGI application.

    ``Emulator(wsid, api_key)`` serves one workspace (by default ``FYTEST``
    with the key ``test-api-key``); ``Emulator(workspaces={wsid: api_key,
    ...})`` serves several, the first being the default one. A value of
    ``workspaces`` may also be a dict of that workspace's own options:
    ``{"api_key": ..., "events": [...], "faults": {...}, "preferences": {...}}``.
    The other keyword arguments (``events``, ``faults``, ``seed``,
    ``preferences``, ``request_log_limit``, ``webhook_timeout``,
    ``allow_remote_webhooks``) apply to every workspace that does not say
    otherwise. The webhook sender calls only URLs on this machine (loopback)
    unless ``allow_remote_webhooks``.

    The Python control methods (``set_fault``, ``state``, ``request_log``...)
    act on the default workspace; :meth:`workspace` gives another one.
    """

    def __init__(
        self,
        wsid: str | None = None,
        api_key: str | None = None,
        *,
        workspaces: Mapping[str, str | Mapping[str, Any]] | None = None,
        events: Iterable[str] | None = None,
        strict_replies: bool = True,
        faults: Mapping[str, Fault | Mapping[str, Any]] | None = None,
        seed: int | None = None,
        preferences: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        request_log_limit: int | None = 10_000,
        webhook_timeout: float = 5.0,
        allow_remote_webhooks: bool = False,
        auto_delivery_reports: float | None = None,
    ) -> None:
        self.strict_replies = strict_replies
        self._defaults: dict[str, Any] = {
            "events": events,
            "faults": faults,
            "seed": seed,
            "preferences": preferences,
            "request_log_limit": request_log_limit,
            "webhook_timeout": webhook_timeout,
            "allow_remote_webhooks": allow_remote_webhooks,
            "auto_delivery_reports": auto_delivery_reports,
        }
        # Replaced, never changed in place: requests read it without a lock.
        self._workspaces: dict[str, Workspace] = {}
        self._registry_lock = threading.Lock()
        if workspaces is None:
            self.add_workspace(
                "FYTEST" if wsid is None else wsid,
                "test-api-key" if api_key is None else api_key,
            )
            return
        if wsid is not None or api_key is not None:
            raise TypeError("pass either wsid and api_key, or workspaces, not both")
        if not isinstance(workspaces, Mapping) or not workspaces:
            raise ValueError("workspaces must map at least one WSID to its API key")
        for name, spec in workspaces.items():
            if isinstance(spec, str):
                self.add_workspace(name, spec)
            elif isinstance(spec, Mapping):
                options = dict(spec)
                key = options.pop("api_key", None)
                if not isinstance(key, str):
                    raise ValueError(f"workspace {name!r} needs an api_key")
                self.add_workspace(name, key, **options)
            else:
                raise TypeError(
                    f"workspace {name!r}: give its API key, or a dict with api_key and options"
                )

    def __repr__(self) -> str:
        names = list(self._workspaces)
        if len(names) == 1:
            return f"Emulator(wsid={names[0]!r})"
        return f"Emulator(workspaces={names!r})"

    # --- workspaces -------------------------------------------------------

    def add_workspace(self, wsid: str, api_key: str, **options: Any) -> Workspace:
        """Serve one more workspace; returns it.

        ``options`` (``events``, ``faults``, ``seed``, ``preferences``,
        ``request_log_limit``, ``webhook_timeout``, ``allow_remote_webhooks``)
        default to the emulator's.
        ValueError for an invalid or already served WSID, or a bad key.
        """
        unknown = sorted(set(options) - _WORKSPACE_OPTIONS)
        if unknown:
            raise TypeError(f"unknown workspace option(s) {unknown}")
        settings = {**self._defaults, **options}
        with self._registry_lock:
            if wsid in self._workspaces:
                raise ValueError(f"workspace {wsid!r} is already served")
            seed = settings["seed"]
            # The first workspace keeps the seed as given, so a one-workspace
            # emulator hands out the ids it always did; the others derive theirs.
            store_seed = seed if not self._workspaces else derived_seed(seed, wsid)
            space = Workspace(wsid, api_key, store_seed=store_seed, **settings)
            self._workspaces = {**self._workspaces, space.wsid: space}
        return space

    def workspace(self, wsid: str | None = None) -> Workspace:
        """The workspace ``wsid`` (None: the default one); UnknownWorkspace if none."""
        spaces = self._workspaces
        if wsid is None:
            return next(iter(spaces.values()))
        try:
            return spaces[wsid]
        except (KeyError, TypeError):
            raise UnknownWorkspace(
                f"unknown workspace {wsid!r}; this emulator serves {', '.join(spaces)}"
            ) from None

    @property
    def workspaces(self) -> dict[str, Workspace]:
        """Every workspace by WSID, the default one first."""
        return dict(self._workspaces)

    @property
    def default_workspace(self) -> Workspace:
        """The first workspace: the one the Python and control APIs address by default."""
        return self.workspace()

    def _space(self) -> Workspace:
        return self.workspace()

    @property
    def wsid(self) -> str:
        """The default workspace's WSID."""
        return self.workspace().wsid

    @property
    def api_key(self) -> str:
        """The default workspace's key (handed to clients; kept out of repr)."""
        return self.workspace().api_key

    @property
    def request_log(self) -> list[LoggedRequest]:
        """The default workspace's request log (``workspace(wsid).request_log`` for another)."""
        return self.workspace().request_log

    @property
    def request_log_limit(self) -> int | None:
        return self.workspace().request_log_limit

    @request_log_limit.setter
    def request_log_limit(self, limit: int | None) -> None:
        """Applies to every workspace."""
        self._defaults["request_log_limit"] = limit
        for space in self._workspaces.values():
            space.request_log_limit = limit

    @property
    def webhook_timeout(self) -> float:
        return float(self.workspace().webhook_timeout)

    @webhook_timeout.setter
    def webhook_timeout(self, seconds: float) -> None:
        """Applies to every workspace."""
        self._defaults["webhook_timeout"] = seconds
        for space in self._workspaces.values():
            space.webhook_timeout = seconds

    @property
    def allow_remote_webhooks(self) -> bool:
        """Whether webhooks may be on another host than this one (default: loopback only)."""
        return bool(self.workspace().allow_remote_webhooks)

    @allow_remote_webhooks.setter
    def allow_remote_webhooks(self, allowed: bool) -> None:
        """Applies to every workspace."""
        self._defaults["allow_remote_webhooks"] = allowed
        for space in self._workspaces.values():
            space.allow_remote_webhooks = allowed

    def reset(self) -> None:
        """Forget all state, request logs and webhooks, of every workspace.

        The event list, preference configuration and faults given to the
        constructor (the command line's ``--latency``, say) come back; those
        set at run time are forgotten. ``workspace(wsid).reset()`` resets one.
        """
        for space in self._workspaces.values():
            space.reset()

    # --- WSGI -------------------------------------------------------------

    def _route(self, path: str) -> Workspace:
        """The workspace a path names; the default one for an unknown WSID."""
        parts = path.split("/", 2)
        spaces = self._workspaces
        found = spaces.get(parts[1]) if len(parts) > 1 else None
        return found if found is not None else next(iter(spaces.values()))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        received = time.time()
        started = time.perf_counter()
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        path = environ.get("PATH_INFO") or "/"
        # Where the client sent it, for Fyno's "Cannot POST /v1/..." text.
        full_path = str(environ.get("SCRIPT_NAME") or "") + path
        query = dict(parse_qsl(environ.get("QUERY_STRING") or "", keep_blank_values=True))
        if path == control.PREFIX or path.startswith(control.PREFIX + "/"):
            return self._control(environ, start_response, method, path, query)
        mount = environ.get(MOUNT_KEY)
        # Outside the mount the server prints, there is no API, as on Fyno.
        outside = mount is not None and (environ.get("SCRIPT_NAME") or "") != mount
        if mount is None and path.startswith("/v1/"):
            path = path[3:]  # another WSGI server mounted us at the host root
        elif outside:
            path = full_path  # logged as sent: no path relative to the API base
        try:
            raw = _read_body(environ)
        except _TooLarge:
            return self._respond(start_response, 413, _error(too_large_message(MAX_BODY)))

        space = self._route(path)
        found = None if outside else find_operation(method, route_path(path))
        op_name = found[0].name if found else None
        with space.lock:
            decision = space.faults.decide(op_name)
        if decision.delay:
            time.sleep(decision.delay)  # outside the lock: other requests go on
        body, problem = _parse_json(raw)
        headers: list[tuple[str, str]] = []
        status: int
        reply: Any
        if decision.faulted and not decision.after:
            status, reply, headers = self._fault_reply(decision)
        else:
            status, reply = self._serve(
                space, environ, found, method, full_path, query, body, problem, received
            )
            if decision.faulted:
                status, reply, headers = self._fault_reply(decision)
        if decision.drop:
            status, reply = 0, None
        space.log(
            LoggedRequest(
                method=method,
                path=path,
                query=query,
                body=body,
                status=status,
                reply=reply,
                operation=op_name,
                time=received,
                duration=time.perf_counter() - started,
                headers=_headers(environ),
            )
        )
        if decision.drop:
            raise DropConnection(f"fault injection dropped {method} {path}")
        return self._respond(start_response, status, reply, headers)

    def _control(
        self,
        environ: Mapping[str, Any],
        start_response: Any,
        method: str,
        path: str,
        query: dict[str, str],
    ) -> list[bytes]:
        refused = control.refuse_origin(environ)
        if refused is not None:
            return self._respond(start_response, *refused)
        try:
            raw = _read_body(environ)
        except _TooLarge:
            return self._respond(start_response, 413, _error(too_large_message(MAX_BODY)))
        refused = control.refuse_content_type(environ, raw)
        if refused is not None:
            return self._respond(start_response, *refused)
        body, problem = _parse_json(raw)
        if problem is not None:
            return self._respond(start_response, 400, _error(problem))
        return self._respond(start_response, *control.handle(self, method, path, query, body))

    def _respond(
        self,
        start_response: Any,
        status: int,
        reply: Any,
        extra: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        payload = json.dumps(reply).encode()
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        headers = [*JSON_HEADERS, ("Content-Length", str(len(payload))), *(extra or ())]
        start_response(f"{status} {phrase}", headers)
        return [payload]

    @staticmethod
    def _fault_reply(decision: Decision) -> tuple[int, Any, list[tuple[str, str]]]:
        if decision.drop:
            return 0, None, []
        status = decision.status or 500
        headers = []
        if decision.retry_after is not None:
            headers.append(("Retry-After", str(decision.retry_after)))
        message = "Too many requests" if status == 429 else "Emulated fault"
        return status, _error(f"{message} ({status})"), headers

    @staticmethod
    def _authorized(
        space: Workspace, environ: Mapping[str, Any], params: Mapping[str, str]
    ) -> bool:
        given = str(environ.get("HTTP_AUTHORIZATION") or "").encode()
        return hmac.compare_digest(given, space.bearer) and params.get("WSID") == space.wsid

    def _serve(
        self,
        space: Workspace,
        environ: Mapping[str, Any],
        found: tuple[Operation, dict[str, str]] | None,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        problem: str | None,
        now: float,
    ) -> tuple[int, Any]:
        if found is None:
            return 404, _error(f"Cannot {method} {path}")
        op, params = found
        if not self._authorized(space, environ, params):
            return 401, _error("Invalid API details")
        if problem is not None:
            return 400, _error(problem)
        message = precheck(op.name, query, body)
        if message is None:
            problems = validate_request(op, params, query, body)
            message = _request_message(op, problems) if problems else None
        if message is not None:
            return 400, _error(message)
        try:
            with space.lock:
                ctx = Ctx(space.store, params.get("version", ""), params, query, body, now)
                status, reply = HANDLERS[op.name](ctx)
        except Exception as exc:  # a bug in the emulator: say so, do not hang up
            return 500, _error(f"Emulator error in {op.name}: {exc!r}")
        if status == 202 and op.name in ("send_event", "send_bulk"):
            space.report_later(reply["request_id"])
        if self.strict_replies:
            problems = validate_reply(op, status, reply)
            if problems:
                return 500, _error(
                    f"Emulator reply to {op.name} ({status}) breaks the contract: "
                    + "; ".join(problems)
                )
        return status, reply
