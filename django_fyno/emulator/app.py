"""The emulator's WSGI application: a stateful stand-in for the Fyno API.

Interface other parts rely on (keep it stable):

- ``Emulator(wsid=..., api_key=..., *, events=None, strict_replies=True)`` is a
  WSGI callable serving the Fyno API under any mount point (the path it sees
  starts with ``/{WSID}/...``; a leading ``/v1`` is tolerated), plus the
  control API under ``/_emulator/``.
- ``emulator.reset()`` forgets all state, faults and the request log.
- ``emulator.request_log`` is a list of :class:`LoggedRequest`.
- Raising :class:`DropConnection` from the app asks the server (or the
  ``responses`` adapter) to drop the connection without an answer.

Each request is routed to a contract operation, authenticated, validated
against the contract, handled (:mod:`.handlers`) under one lock, and its
reply checked against the contract when ``strict_replies`` is on.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import requests

from . import control
from .contract import Operation, find_operation, validate_reply, validate_request
from .faults import Decision, Fault, Faults
from .handlers import HANDLERS, PROPERTY_KEYS, Ctx, precheck
from .state import Store, iso

__all__ = ["DropConnection", "Emulator", "LoggedRequest"]

JSON_HEADERS = [("Content-Type", "application/json")]
_SECRET_HEADERS = frozenset({"HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_PROXY_AUTHORIZATION"})


class DropConnection(Exception):
    """Close the connection without writing a response (fault injection)."""


@dataclass
class LoggedRequest:
    method: str
    path: str  # as received, e.g. "/FY1/live/profiles/U1"
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int  # 0 when the connection was dropped
    reply: Any  # parsed JSON reply, or None (dropped connection)
    operation: str | None  # a key of contract.OPERATIONS, None for unknown routes
    time: float  # time.time() when received
    duration: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # never holds Authorization

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "body": self.body,
            "status": self.status,
            "reply": self.reply,
            "operation": self.operation,
            "time": self.time,
            "duration": self.duration,
            "headers": dict(self.headers),
        }


def _error(message: str) -> dict[str, str]:
    return {"_message": message, "status": "error"}


def _read_body(environ: Mapping[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    data: bytes = environ["wsgi.input"].read(length)
    return data


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """(parsed body or None, whether it failed to parse)."""
    if not raw.strip():
        return None, False
    try:
        return json.loads(raw), False
    except ValueError:
        return None, True


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


class Emulator:
    """A Fyno workspace in memory, served as a WSGI application."""

    def __init__(
        self,
        wsid: str = "FYTEST",
        api_key: str = "test-api-key",
        *,
        events: Iterable[str] | None = None,
        strict_replies: bool = True,
        faults: Mapping[str, Fault | Mapping[str, Any]] | None = None,
        seed: int | None = None,
        preferences: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        request_log_limit: int | None = 10_000,
        webhook_timeout: float = 5.0,
    ) -> None:
        self.wsid = wsid
        # The key this emulator accepts (handed to clients; kept out of repr).
        self.api_key = api_key
        self._bearer = f"Bearer {api_key}".encode()
        self.strict_replies = strict_replies
        self.request_log: list[LoggedRequest] = []
        self.request_log_limit = request_log_limit
        self.webhook_timeout = webhook_timeout
        self._lock = threading.RLock()
        self._seed = seed
        # Configuration that reset() restores (state is what it forgets).
        self._initial_events = set(events) if events is not None else None
        self._initial_preferences = preferences
        self._store = self._new_store()
        self._faults = Faults(faults, seed=seed)
        # A snapshot of plain knobs: Fault objects count down (fail_next) as they act.
        self._initial_faults = {
            key: Fault.from_mapping(knobs)
            for key, knobs in self._faults.as_dict()["faults"].items()
        }

    def __repr__(self) -> str:
        return f"Emulator(wsid={self.wsid!r})"

    def _new_store(self) -> Store:
        store = Store(seed=self._seed)
        store.allowed_events = (
            set(self._initial_events) if self._initial_events is not None else None
        )
        if self._initial_preferences is not None:
            store.configure_preferences(self._initial_preferences)
        return store

    def reset(self) -> None:
        """Forget all state, the request log and the webhook: back to the start.

        The event list, preference configuration and faults given to the
        constructor (the command line's ``--latency``, say) come back; those
        set at run time are forgotten.
        """
        with self._lock:
            self.request_log.clear()
            self._store = self._new_store()
            self._faults = Faults(
                {key: replace(fault) for key, fault in self._initial_faults.items()},
                seed=self._seed,
            )

    # --- WSGI -------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        received = time.time()
        started = time.perf_counter()
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        path = environ.get("PATH_INFO") or "/"
        if path.startswith("/v1/"):  # mounted at the host root rather than at /v1
            path = path[3:]
        query = dict(parse_qsl(environ.get("QUERY_STRING") or "", keep_blank_values=True))
        raw = _read_body(environ)
        if path == control.PREFIX or path.startswith(control.PREFIX + "/"):
            body, broken = _parse_json(raw)
            if broken:
                return self._respond(start_response, 400, _error("Request body is not valid JSON"))
            return self._respond(start_response, *control.handle(self, method, path, query, body))

        found = find_operation(method, path)
        op_name = found[0].name if found else None
        with self._lock:
            decision = self._faults.decide(op_name)
        if decision.delay:
            time.sleep(decision.delay)  # outside the lock: other requests go on
        body, broken = _parse_json(raw)
        headers: list[tuple[str, str]] = []
        status: int
        reply: Any
        if decision.faulted and not decision.after:
            status, reply, headers = self._fault_reply(decision)
        else:
            status, reply = self._serve(environ, found, method, path, query, body, broken, received)
            if decision.faulted:
                status, reply, headers = self._fault_reply(decision)
        if decision.drop:
            status, reply = 0, None
        self._log(
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

    def _authorized(self, environ: Mapping[str, Any], params: Mapping[str, str]) -> bool:
        given = str(environ.get("HTTP_AUTHORIZATION") or "").encode()
        return hmac.compare_digest(given, self._bearer) and params.get("WSID") == self.wsid

    def _serve(
        self,
        environ: Mapping[str, Any],
        found: tuple[Operation, dict[str, str]] | None,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        broken: bool,
        now: float,
    ) -> tuple[int, Any]:
        if found is None:
            return 404, _error(f"Cannot {method} {path}")
        op, params = found
        if not self._authorized(environ, params):
            return 401, _error("Invalid API details")
        if broken:
            return 400, _error("Request body is not valid JSON")
        message = precheck(op.name, query, body)
        if message is None:
            problems = validate_request(op, params, query, body)
            message = _request_message(op, problems) if problems else None
        if message is not None:
            return 400, _error(message)
        try:
            with self._lock:
                ctx = Ctx(self._store, params.get("version", ""), params, query, body, now)
                status, reply = HANDLERS[op.name](ctx)
        except Exception as exc:  # a bug in the emulator: say so, do not hang up
            return 500, _error(f"Emulator error in {op.name}: {exc!r}")
        if self.strict_replies:
            problems = validate_reply(op, status, reply)
            if problems:
                return 500, _error(
                    f"Emulator reply to {op.name} ({status}) breaks the contract: "
                    + "; ".join(problems)
                )
        return status, reply

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            log = self.request_log
            log.append(entry)
            limit = self.request_log_limit
            # Trim in chunks so that the amortised cost per request stays O(1).
            if limit is not None and len(log) > limit + max(limit // 10, 1):
                del log[: len(log) - limit]

    # --- Python mirror of the control API -----------------------------------

    @property
    def events(self) -> set[str] | None:
        """The event names accepted (None: any name)."""
        allowed = self._store.allowed_events
        return set(allowed) if allowed is not None else None

    @events.setter
    def events(self, names: Iterable[str] | None) -> None:
        self.set_events(names)

    def set_events(self, names: Iterable[str] | None) -> None:
        """Accept only these event names from now on (None: any name)."""
        with self._lock:
            self._store.allowed_events = set(names) if names is not None else None

    def configure_preferences(self, sections: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Replace the preference sections: ``{section: [topic, ...]}``.

        A topic is ``{subscription_id, name, description?, channel_config?:
        {channel: on|off|required}, notification_events?: [{event_id,
        event_name}] or [event_name]}``. ValueError when malformed.
        """
        with self._lock:
            self._store.configure_preferences(sections)

    def preference_config(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return self._store.preference_config()

    def set_faults(
        self,
        faults: Mapping[str, Fault | Mapping[str, Any]] | None = None,
        *,
        seed: int | None = None,
        replace: bool = False,
    ) -> None:
        """Put faults in force: ``{"*" or operation: Fault or knobs}``.

        ``seed`` reseeds the random generator; ``replace`` drops faults not named.
        """
        with self._lock:
            if replace:
                self._faults.clear()
            if faults:
                self._faults.update(faults)
            if seed is not None:
                self._faults.reseed(seed)

    def set_fault(self, operation: str | None = None, **knobs: Any) -> Fault:
        """Put one fault in force for ``operation`` (None: every request)."""
        with self._lock:
            return self._faults.set(operation, knobs)

    def clear_faults(self, operation: str | None = None) -> None:
        """Remove one operation's fault (or the global one with "*"), or all."""
        with self._lock:
            self._faults.clear(operation)

    def faults_config(self) -> dict[str, Any]:
        """``{"seed": ..., "faults": {key: knobs}}`` as in force now."""
        with self._lock:
            return self._faults.as_dict()

    def set_otp(
        self,
        code: str | None,
        *,
        destination: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Choose OTP codes instead of random ones.

        With ``request_id`` or ``destination``, ``code`` is valid for it at
        once (and a destination's next OTP event sends that code); with
        neither, every later OTP event uses ``code`` (None: random again).
        """
        from .state import Otp

        if code is not None and not code.isdigit():
            raise ValueError("an OTP code is made of digits")
        with self._lock:
            store = self._store
            if request_id is None and destination is None:
                store.otp_code = code
                return
            if code is None:
                raise ValueError("code is required with a destination or request_id")
            otp = Otp(code, request_id, {destination} if destination else set(), time.time())
            if request_id:
                store.otp_by_request[request_id] = otp
            if destination:
                store.otp_by_destination[destination] = otp
                store.otp_presets[destination] = code

    def otp_for(
        self, *, request_id: str | None = None, destination: str | None = None
    ) -> str | None:
        """The unused OTP code sent for a request or to a destination."""
        with self._lock:
            store = self._store
            otp = store.otp_by_request.get(request_id) if request_id else None
            if otp is None and destination:
                otp = store.otp_by_destination.get(destination)
            return otp.code if otp is not None and not otp.used else None

    def state(self) -> dict[str, Any]:
        """All the state, JSON-ready: profiles, preferences, events per version,
        suppressions and configuration."""
        with self._lock:
            return {"wsid": self.wsid, **self._store.dump()}

    def profile(self, version: str, distinct_id: str) -> dict[str, Any] | None:
        """The profile as GET profile returns it (None when absent)."""
        with self._lock:
            found = self._store.versions[version].profiles.get(distinct_id)
            return found.fetched(time.time()) if found is not None else None

    def profiles(self, version: str = "live") -> dict[str, dict[str, Any]]:
        with self._lock:
            now = time.time()
            return {
                key: profile.fetched(now)
                for key, profile in self._store.versions[version].profiles.items()
            }

    @property
    def events_log(self) -> list[dict[str, Any]]:
        """Every accepted notification, oldest first (bulk items one by one)."""
        with self._lock:
            return [record.as_dict() for record in self._store.events_log]

    @property
    def suppressions(self) -> list[dict[str, str]]:
        with self._lock:
            return [item.as_dict() for item in self._store.suppressions.values()]

    def preferences(
        self, version: str, distinct_id: str, *, event_list: bool = False
    ) -> dict[str, Any]:
        """A user's preferences, as GET preference returns them."""
        from .handlers import get_preferences

        query = {"distinct_id": distinct_id, "event_list": str(event_list).lower()}
        with self._lock:
            ctx = Ctx(self._store, version, {"version": version}, query, None, time.time())
            return dict(get_preferences(ctx)[1])

    def requests(self) -> list[dict[str, Any]]:
        """The request log as JSON-ready dicts."""
        with self._lock:
            return [entry.as_dict() for entry in self.request_log]

    def clear_request_log(self) -> None:
        with self._lock:
            self.request_log.clear()

    @property
    def webhook_url(self) -> str | None:
        return self._store.webhook_url

    def register_webhook(self, url: str, *, verify: bool = False) -> dict[str, Any]:
        """Send delivery reports to ``url`` from now on.

        With ``verify``, first check the URL as Fyno does: a GET carrying
        ``fyno_token``, which the endpoint must echo back.
        """
        result: dict[str, Any] = {"url": url, "verified": None}
        if verify:
            token = secrets.token_hex(16)
            answer = requests.get(url, params={"fyno_token": token}, timeout=self.webhook_timeout)
            result["verified"] = answer.ok and token in answer.text
            if not result["verified"]:
                raise ValueError(f"{url} did not echo fyno_token (HTTP {answer.status_code})")
        with self._lock:
            self._store.webhook_url = url
        return result

    def unregister_webhook(self) -> None:
        with self._lock:
            self._store.webhook_url = None

    def delivery_reports(
        self,
        *,
        request_id: str | None = None,
        custom_id: str | None = None,
        status: str = "delivered",
        channel: str | None = None,
    ) -> list[dict[str, Any]]:
        """The Fyno-like delivery reports for sent messages (one per channel).

        LookupError when nothing sent matches.
        """
        if not request_id and not custom_id:
            raise ValueError("request_id or custom_id is required")
        now = time.time()
        with self._lock:
            store = self._store
            records = (
                store.events_by_request.get(request_id, [])
                if request_id
                else store.events_by_custom_id.get(custom_id or "", [])
            )
            reports = []
            for record in records:
                if custom_id and record.custom_id != custom_id:
                    continue
                callback = record.callback or {}
                for name, sent in record.response.items():
                    if channel and name != channel:
                        continue
                    reports.append(
                        {
                            "request_id": record.request_id,
                            "custom_id": callback.get("custom_id"),
                            "custom1": callback.get("custom1"),
                            "custom2": callback.get("custom2"),
                            "custom3": callback.get("custom3"),
                            "event": record.event,
                            "distinct_id": record.distinct_id,
                            "version": record.version,
                            "channel": name,
                            "destination": sent["destination"],
                            "msg_id": sent["msg_id"],
                            "status": status,
                            "timestamp": iso(now),
                        }
                    )
        if not reports:
            raise LookupError("no message sent matches that request_id/custom_id/channel")
        return reports

    def send_delivery_report(
        self,
        *,
        request_id: str | None = None,
        custom_id: str | None = None,
        status: str = "delivered",
        channel: str | None = None,
    ) -> list[dict[str, Any]]:
        """POST delivery reports to the registered webhook; what it answered.

        Each item is ``{"report": ..., "status_code": int, "body": ...}``.
        """
        url = self.webhook_url
        if url is None:
            raise ValueError("no webhook registered (POST /_emulator/webhook first)")
        results = []
        reports = self.delivery_reports(
            request_id=request_id, custom_id=custom_id, status=status, channel=channel
        )
        for report in reports:  # outside the lock: the webhook may call the emulator
            answer = requests.post(url, json=report, timeout=self.webhook_timeout)
            try:
                body: Any = answer.json()
            except ValueError:
                body = answer.text
            results.append({"report": report, "status_code": answer.status_code, "body": body})
        return results
