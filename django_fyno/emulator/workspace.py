"""One emulated Fyno workspace: its key, state, faults, request log and webhook.

A :class:`Workspace` is what a WSID names. The :class:`~.app.Emulator` serves
one or several and routes each request to the workspace its path names; every
workspace keeps its own profiles, events, preferences, suppressions, OTPs,
faults and request log, behind its own lock.

:class:`WorkspaceControls` is the Python control API of a workspace (the
mirror of the HTTP control API). ``Workspace`` has it for itself, and
``Emulator`` has it for its default (first) workspace, so the one-workspace
code ``emulator.set_fault(...)`` keeps working.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import requests

from .faults import Fault, Faults
from .handlers import Ctx, get_preferences
from .state import Otp, Store, iso

__all__ = [
    "LoggedRequest",
    "WebhookError",
    "Workspace",
    "WorkspaceControls",
    "check_api_key",
    "check_wsid",
]

# One path segment, like Fyno's own WSIDs (FYXXXXXXXX). "v1" is refused: under
# a WSGI server of the user's own, the emulator tolerates a leading /v1 in
# paths, which would swallow it.
_WSID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_RESERVED_WSIDS = frozenset({"v1"})
# Visible ASCII: it must travel in an Authorization header and print on one line.
_API_KEY = re.compile(r"[\x21-\x7e]{1,512}")


def check_wsid(wsid: Any) -> str:
    """``wsid`` if it can name a workspace, else ValueError (the message names it)."""
    if not isinstance(wsid, str) or not _WSID.fullmatch(wsid) or wsid in _RESERVED_WSIDS:
        raise ValueError(
            f"invalid WSID {wsid!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit (and not 'v1')"
        )
    return wsid


def check_api_key(api_key: Any) -> str:
    """``api_key`` if usable, else ValueError (the message never shows the key)."""
    if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key):
        raise ValueError(
            "invalid API key: use 1-512 visible ASCII characters (no spaces or control characters)"
        )
    return api_key


logger = logging.getLogger("django_fyno.emulator")


class WebhookError(ValueError):
    """A webhook URL the emulator will not call, or could not reach."""


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost`` or a loopback address."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host.rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: where it points may change after this check
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _reason(error: BaseException) -> str:
    """A short cause for a failed webhook call (``Connection refused``, ``timed out``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | requests.Timeout):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        reason = getattr(current, "reason", None)  # urllib3 wraps the cause here
        current = (
            reason
            if isinstance(reason, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return type(error).__name__


def derived_seed(seed: int | None, wsid: str) -> int | None:
    """A seed of its own for a workspace's ids, repeatable from ``seed``.

    Two workspaces seeded alike would hand out the same request and profile
    ids, which Fyno never does across workspaces.
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}/{wsid}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


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


class WorkspaceControls:
    """The Python control API of one workspace (see :meth:`_space`)."""

    def _space(self) -> Workspace:
        """The workspace these methods act on."""
        raise NotImplementedError

    @property
    def events(self) -> set[str] | None:
        """The event names accepted (None: any name)."""
        allowed = self._space().store.allowed_events
        return set(allowed) if allowed is not None else None

    @events.setter
    def events(self, names: Iterable[str] | None) -> None:
        self.set_events(names)

    def set_events(self, names: Iterable[str] | None) -> None:
        """Accept only these event names from now on (None: any name)."""
        space = self._space()
        with space.lock:
            space.store.allowed_events = set(names) if names is not None else None

    def configure_preferences(self, sections: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Replace the preference sections: ``{section: [topic, ...]}``.

        A topic is ``{subscription_id, name, description?, channel_config?:
        {channel: on|off|required}, notification_events?: [{event_id,
        event_name}] or [event_name]}``. ValueError when malformed.
        """
        space = self._space()
        with space.lock:
            space.store.configure_preferences(sections)

    def preference_config(self) -> dict[str, list[dict[str, Any]]]:
        space = self._space()
        with space.lock:
            return space.store.preference_config()

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
        space = self._space()
        with space.lock:
            if replace:
                space.faults.clear()
            if faults:
                space.faults.update(faults)
            if seed is not None:
                space.faults.reseed(seed)

    def set_fault(self, operation: str | None = None, **knobs: Any) -> Fault:
        """Put one fault in force for ``operation`` (None: every request)."""
        space = self._space()
        with space.lock:
            return space.faults.set(operation, knobs)

    def clear_faults(self, operation: str | None = None) -> None:
        """Remove one operation's fault (or the global one with "*"), or all."""
        space = self._space()
        with space.lock:
            space.faults.clear(operation)

    def faults_config(self) -> dict[str, Any]:
        """``{"seed": ..., "faults": {key: knobs}}`` as in force now."""
        space = self._space()
        with space.lock:
            return space.faults.as_dict()

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
        if code is not None and not code.isdigit():
            raise ValueError("an OTP code is made of digits")
        space = self._space()
        with space.lock:
            store = space.store
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
        space = self._space()
        with space.lock:
            store = space.store
            otp = store.otp_by_request.get(request_id) if request_id else None
            if otp is None and destination:
                otp = store.otp_by_destination.get(destination)
            return otp.code if otp is not None and not otp.used else None

    def state(self) -> dict[str, Any]:
        """All the state, JSON-ready: profiles, preferences, events per version,
        suppressions and configuration."""
        space = self._space()
        with space.lock:
            return {"wsid": space.wsid, **space.store.dump()}

    def profile(self, version: str, distinct_id: str) -> dict[str, Any] | None:
        """The profile as GET profile returns it (None when absent)."""
        space = self._space()
        with space.lock:
            found = space.store.versions[version].profiles.get(distinct_id)
            return found.fetched(time.time()) if found is not None else None

    def profiles(self, version: str = "live") -> dict[str, dict[str, Any]]:
        space = self._space()
        with space.lock:
            now = time.time()
            return {
                key: profile.fetched(now)
                for key, profile in space.store.versions[version].profiles.items()
            }

    @property
    def events_log(self) -> list[dict[str, Any]]:
        """Every accepted notification, oldest first (bulk items one by one)."""
        space = self._space()
        with space.lock:
            return [record.as_dict() for record in space.store.events_log]

    @property
    def suppressions(self) -> list[dict[str, str]]:
        space = self._space()
        with space.lock:
            return [item.as_dict() for item in space.store.suppressions.values()]

    def preferences(
        self, version: str, distinct_id: str, *, event_list: bool = False
    ) -> dict[str, Any]:
        """A user's preferences, as GET preference returns them."""
        query = {"distinct_id": distinct_id, "event_list": str(event_list).lower()}
        space = self._space()
        with space.lock:
            ctx = Ctx(space.store, version, {"version": version}, query, None, time.time())
            return dict(get_preferences(ctx)[1])

    def requests(self) -> list[dict[str, Any]]:
        """The request log as JSON-ready dicts."""
        space = self._space()
        with space.lock:
            return [entry.as_dict() for entry in space.request_log]

    def clear_request_log(self) -> None:
        space = self._space()
        with space.lock:
            space.request_log.clear()

    @property
    def webhook_url(self) -> str | None:
        return self._space().store.webhook_url

    def register_webhook(self, url: str, *, verify: bool = False) -> dict[str, Any]:
        """Send delivery reports to ``url`` from now on.

        With ``verify``, first check the URL as Fyno does: a GET carrying
        ``fyno_token``, which the endpoint must echo back. :class:`WebhookError`
        (a ValueError) when the URL is not on this machine and remote webhooks
        are not allowed, when it cannot be reached, or does not echo the token.
        """
        space = self._space()
        space.check_webhook_url(url)
        result: dict[str, Any] = {"url": url, "verified": None}
        if verify:
            token = secrets.token_hex(16)
            try:
                answer = requests.get(
                    url,
                    params={"fyno_token": token},
                    timeout=space.webhook_timeout,
                    allow_redirects=space.allow_remote_webhooks,
                )
            except requests.RequestException as error:
                raise WebhookError(f"cannot verify {url}: {_reason(error)}") from None
            result["verified"] = answer.ok and token in answer.text
            if not result["verified"]:
                raise WebhookError(f"{url} did not echo fyno_token (HTTP {answer.status_code})")
        with space.lock:
            space.store.webhook_url = url
        return result

    def unregister_webhook(self) -> None:
        space = self._space()
        with space.lock:
            space.store.webhook_url = None

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
        space = self._space()
        with space.lock:
            store = space.store
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
        space = self._space()
        space.check_webhook_url(url)
        results = []
        reports = self.delivery_reports(
            request_id=request_id, custom_id=custom_id, status=status, channel=channel
        )
        for report in reports:  # outside the lock: the webhook may call the emulator
            try:
                answer = requests.post(
                    url,
                    json=report,
                    timeout=space.webhook_timeout,
                    allow_redirects=space.allow_remote_webhooks,
                )
            except requests.RequestException as error:
                raise WebhookError(f"cannot deliver a report to {url}: {_reason(error)}") from None
            try:
                body: Any = answer.json()
            except ValueError:
                body = answer.text
            results.append({"report": report, "status_code": answer.status_code, "body": body})
        return results

    def report_later(self, request_id: str) -> None:
        """With ``auto_delivery_reports`` and a webhook, report ``request_id`` delivered soon.

        From a timer thread, after the answer has gone: a report that cannot be
        delivered is logged and dropped, as Fyno drops a webhook call that fails.
        """
        space = self._space()
        delay = space.auto_delivery_reports
        if delay is None or space.store.webhook_url is None:
            return

        def send() -> None:
            try:
                self.send_delivery_report(request_id=request_id)
            except (LookupError, ValueError) as error:  # WebhookError is a ValueError
                logger.warning("automatic delivery report for %s not sent: %s", request_id, error)

        timer = threading.Timer(delay, send)
        timer.daemon = True
        timer.start()


class Workspace(WorkspaceControls):
    """A Fyno workspace in memory: built by the :class:`~.app.Emulator`.

    ``emulator.workspace("FY2")`` returns one; its Python control API (faults,
    state, events, OTPs, webhook, ``request_log``, :meth:`reset`) acts on that
    workspace only. The API key is kept out of its ``repr``.
    """

    def __init__(
        self,
        wsid: str,
        api_key: str,
        *,
        events: Iterable[str] | None = None,
        faults: Mapping[str, Fault | Mapping[str, Any]] | None = None,
        seed: int | None = None,
        store_seed: int | None = None,
        preferences: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        request_log_limit: int | None = 10_000,
        webhook_timeout: float = 5.0,
        allow_remote_webhooks: bool = False,
        auto_delivery_reports: float | None = None,
    ) -> None:
        self.wsid = check_wsid(wsid)
        # The key this workspace accepts (handed to clients; kept out of repr).
        self.api_key = check_api_key(api_key)
        self.bearer = f"Bearer {api_key}".encode()
        self.request_log: list[LoggedRequest] = []
        self.request_log_limit = request_log_limit
        self.webhook_timeout = webhook_timeout
        # Off: the webhook sender calls only URLs on this machine (loopback).
        self.allow_remote_webhooks = allow_remote_webhooks
        # Seconds after an accepted event before its "delivered" reports go to the
        # registered webhook, as Fyno's would; None: only when asked (POST delivery-report).
        if auto_delivery_reports is not None and not (
            isinstance(auto_delivery_reports, (int, float)) and 0 <= auto_delivery_reports < 3600
        ):
            raise ValueError("auto_delivery_reports must be None or seconds in [0, 3600)")
        self.auto_delivery_reports = auto_delivery_reports
        self.lock = threading.RLock()
        # Configuration that reset() restores (state is what it forgets).
        self._seed = seed
        self._store_seed = store_seed
        self._initial_events = set(events) if events is not None else None
        self._initial_preferences = preferences
        # Copies: a Fault counts down (fail_next) as it acts, and must not act
        # for another workspace built from the same configuration.
        self._initial_faults = {
            key: replace(value) if isinstance(value, Fault) else Fault.from_mapping(value)
            for key, value in (faults or {}).items()
        }
        self.store = self._new_store()
        self.faults = self._new_faults()

    def __repr__(self) -> str:
        return f"Workspace(wsid={self.wsid!r})"

    def _space(self) -> Workspace:
        return self

    def check_webhook_url(self, url: str) -> None:
        """WebhookError unless the emulator may call ``url``.

        It must be http(s); unless ``allow_remote_webhooks``, on loopback
        (``localhost``, ``127.0.0.0/8``, ``::1``): nobody else's server is
        called because a test, or a web page, said so.
        """
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise WebhookError("url must be an http(s) URL")
        if not self.allow_remote_webhooks and not is_loopback_url(url):
            raise WebhookError(
                f"{url} is not on this machine: the emulator calls webhooks on loopback "
                "only (localhost, 127.0.0.1, ::1). Start it with --allow-remote-webhooks "
                "(Emulator(allow_remote_webhooks=True)) to call other hosts"
            )

    def _new_store(self) -> Store:
        store = Store(seed=self._store_seed)
        store.allowed_events = (
            set(self._initial_events) if self._initial_events is not None else None
        )
        if self._initial_preferences is not None:
            store.configure_preferences(self._initial_preferences)
        return store

    def _new_faults(self) -> Faults:
        return Faults(
            {key: replace(fault) for key, fault in self._initial_faults.items()}, seed=self._seed
        )

    def reset(self) -> None:
        """Forget this workspace's state, request log and webhook.

        The event list, preference configuration and faults it was built with
        come back; those set at run time are forgotten.
        """
        with self.lock:
            self.request_log.clear()
            self.store = self._new_store()
            self.faults = self._new_faults()

    def log(self, entry: LoggedRequest) -> None:
        with self.lock:
            log = self.request_log
            log.append(entry)
            limit = self.request_log_limit
            # Trim in chunks so that the amortised cost per request stays O(1).
            if limit is not None and len(log) > limit + max(limit // 10, 1):
                del log[: len(log) - limit]
