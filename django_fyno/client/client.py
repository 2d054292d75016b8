"""FynoClient: one typed method per Fyno API operation."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from .. import __version__
from . import validation as check
from .config import FynoConfig, RetryPolicy
from .exceptions import (
    FynoBadRequestError,
    FynoConfigurationError,
    FynoConnectionError,
    FynoTimeoutError,
    FynoTransportError,
    FynoValidationError,
    error_for_response,
)
from .operations import OPERATIONS, OperationSpec
from .transport import (
    IDEMPOTENT,
    NOT_IDEMPOTENT,
    build_session,
    parse_retry_after,
    prepare_call,
    proxies_for,
    send_with_retries,
    underlying_error,
)
from .types import (
    Acknowledgement,
    BatchPropertyUpdate,
    BulkEventResult,
    EventResult,
    Preferences,
    PreferenceUpdate,
    Profile,
    PropertyUpdate,
    Suppression,
)

__all__ = ["FynoClient"]

logger = logging.getLogger("django_fyno.client")

USER_AGENT = f"django-fyno/{__version__}"
WRONG_OTP_MESSAGE = "user entered the wrong OTP"


def _transport_error(exc: requests.RequestException, method: str, path: str) -> FynoTransportError:
    """Map a requests failure to ours, saying whether Fyno may have seen the request."""
    cause = underlying_error(exc)
    where = {"method": method, "path": path}
    if isinstance(cause, NewConnectionError):  # refused, DNS failure: nothing was sent
        return FynoConnectionError(
            "could not connect to Fyno", may_have_reached_fyno=False, **where
        )
    if isinstance(exc, requests.ConnectTimeout) or isinstance(cause, ConnectTimeoutError):
        return FynoTimeoutError(
            "timed out connecting to Fyno", may_have_reached_fyno=False, **where
        )
    if isinstance(exc, requests.ReadTimeout) or isinstance(cause, ReadTimeoutError):
        return FynoTimeoutError(
            "timed out waiting for Fyno's answer", may_have_reached_fyno=True, **where
        )
    return FynoConnectionError(
        f"connection to Fyno failed ({type(exc).__name__})", may_have_reached_fyno=True, **where
    )


def _system_error(exc: requests.RequestException) -> OSError | None:
    """The operating system's error under a requests failure, if any.

    Refused, unreachable, DNS failure, timeout, reset, TLS: urllib3 keeps it
    as ``reason``, in ``args`` or as ``__cause__``/``__context__``.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, requests.RequestException):
            return current
        nested = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending.extend(e for e in (*nested, *current.args) if isinstance(e, BaseException))
    return None


def _frameless_cause(exc: requests.RequestException) -> OSError | None:
    """What to chain to our error instead of ``exc``: its system error, copied bare.

    ``exc`` itself is never chained: its traceback runs through requests,
    urllib3 and http.client, whose frames hold the request's headers,
    ``Authorization: Bearer <key>`` among them, and Django's debug page and
    error e-mails show the variables of every chained exception's frames. The
    copy keeps what helps (``ConnectionRefusedError: [Errno 111] Connection
    refused``) without a traceback, a chain, or anything but its numbers and text.
    """
    found = _system_error(exc)
    if found is None:
        return None
    args = tuple(arg for arg in found.args if isinstance(arg, (int, str)))
    try:
        return type(found)(*args)
    except Exception:  # a subclass with its own constructor
        return OSError(*args)


def _decode(response: requests.Response) -> Any:
    """The JSON body, or the text when it is not JSON (a proxy's HTML error page…)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _drop_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class FynoClient:
    """A client for Fyno's REST API: one typed method per operation.

    Build it with ``FynoClient(wsid=..., api_key=...)``, ``FynoClient(config=...)``
    or ``FynoClient(config=FynoConfig.from_env())``. It holds one pooled
    session: call :meth:`close`, or use it as a context manager.
    """

    def __init__(
        self,
        *,
        config: FynoConfig | None = None,
        wsid: str | None = None,
        api_key: str | None = None,
        version: str = "live",
        endpoint: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        try:
            if config is None:
                settings: dict[str, Any] = _drop_none(
                    endpoint=endpoint,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    retry=retry,
                )
                config = FynoConfig(
                    wsid=wsid or "", api_key=api_key or "", version=version, **settings
                )
            elif wsid is not None or api_key is not None:
                raise FynoConfigurationError("pass either config or wsid/api_key, not both")
        except FynoConfigurationError as exc:
            # Its message never holds the key, but tracebacks show every frame's
            # variables (Django's debug page, error e-mails): raise it afresh from
            # here, without FynoConfig's frames, and without this frame's api_key.
            del api_key
            raise exc.with_traceback(None) from None
        self.config = config
        self._session = build_session(
            config.api_key,
            pool_size=config.pool_size,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        # The proxies for the one host this client talks to, worked out once from the
        # environment (HTTPS_PROXY, NO_PROXY...): requests would otherwise re-read the
        # environment on every request, about a third of a request's CPU.
        self._proxies = proxies_for(self._session, config.endpoint)

    def __repr__(self) -> str:
        return (
            f"FynoClient(wsid={self.config.wsid!r}, version={self.config.version!r}, "
            f"endpoint={self.config.endpoint!r})"
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> FynoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------

    def _request(
        self,
        name: str,
        path_params: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one operation and return its decoded reply, or raise a FynoError."""
        spec = OPERATIONS[name]
        values = {"WSID": self.config.wsid, "version": self.config.version, **(path_params or {})}
        path = spec.template.format(**{key: quote(value, safe="") for key, value in values.items()})
        prepared = prepare_call(
            self._session, spec.method, self.config.endpoint + path, params=params, body=body
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Fyno %s %s request body: %s", spec.method, spec.template, json.dumps(body)
            )
        started = time.perf_counter()
        response = self._send(prepared, spec, started)
        elapsed_ms = (time.perf_counter() - started) * 1000
        reply = _decode(response)
        request_id = reply.get("request_id") if isinstance(reply, dict) else None
        logger.info(
            "Fyno %s %s -> %d in %d ms%s",
            spec.method,
            spec.template,
            response.status_code,
            elapsed_ms,
            f" request_id={request_id}" if request_id else "",
            extra={
                "fyno_operation": name,
                "fyno_status": response.status_code,
                "fyno_request_id": request_id,
            },
        )
        logger.debug("Fyno %s %s reply body: %s", spec.method, spec.template, response.text)
        if not 200 <= response.status_code < 300:
            raise error_for_response(
                response.status_code,
                reply,
                method=spec.method,
                path=spec.template,
                retry_after=parse_retry_after(
                    response.headers.get("Retry-After"), self.config.retry.wall_clock()
                ),
            )
        return reply

    def _send(
        self, prepared: requests.PreparedRequest, spec: OperationSpec, started: float
    ) -> requests.Response:
        """Send with the operation's retry rules; a failure without an answer raises ours."""
        try:
            return send_with_retries(
                lambda: self._send_once(prepared),
                rules=IDEMPOTENT if spec.idempotent else NOT_IDEMPOTENT,
                policy=self.config.retry,
                label=f"{spec.method} {spec.template}",
            )
        except requests.RequestException as exc:
            error = _transport_error(exc, spec.method, spec.template)
            cause = _frameless_cause(exc)
        logger.warning(
            "Fyno %s %s failed after %d ms: %s",
            spec.method,
            spec.template,
            (time.perf_counter() - started) * 1000,
            error,
        )
        # Raised outside the except clause, so requests' error is neither the cause
        # nor the context of ours: see _frameless_cause.
        raise error from cause

    def _send_once(self, prepared: requests.PreparedRequest) -> requests.Response:
        """One attempt, through ``Session.send``: what mocking libraries (responses,
        requests-mock) patch, so a test that mocks requests sees every call."""
        return self._session.send(
            prepared,
            proxies=self._proxies,
            timeout=(self.config.connect_timeout, self.config.read_timeout),
            allow_redirects=False,
        )

    # -- events ------------------------------------------------------------------

    def send_event(
        self,
        event: str,
        *,
        distinct_id: str | None = None,
        to: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
        callback: Mapping[str, Any] | None = None,
    ) -> EventResult:
        """Notify one user: by ``distinct_id``, by explicit ``to`` destinations, or both."""
        body = self._event_item(distinct_id=distinct_id, to=to, data=data, callback=callback)
        body = {"event": check.check_text(event, "event"), **body}
        return EventResult.from_json(self._request("send_event", body=body))

    def send_bulk(self, event: str, batch: Iterable[Mapping[str, Any]]) -> BulkEventResult:
        """Notify many users with one event.

        Each batch item is a mapping with ``distinct_id`` and/or ``to``, and
        optional ``data`` and ``callback``. The reply's items carry ``seq``.
        """
        event = check.check_text(event, "event")
        if isinstance(batch, (str, bytes, Mapping)):
            raise FynoValidationError("batch", "must be a list of items")
        items = []
        for index, item in enumerate(batch):
            where = f"batch[{index}]"
            if not isinstance(item, Mapping):
                raise FynoValidationError(where, "must be a mapping")
            unknown = set(item) - {"distinct_id", "to", "data", "callback"}
            if unknown:
                raise FynoValidationError(where, f"unknown keys {check.describe_keys(unknown)}")
            items.append(self._event_item(prefix=f"{where}.", **item))
        if not items:
            raise FynoValidationError("batch", "must hold at least one item")
        reply = self._request("send_bulk", body={"event": event, "batch": items})
        return BulkEventResult.from_json(reply)

    @staticmethod
    def _event_item(
        *,
        distinct_id: str | None = None,
        to: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
        callback: Mapping[str, Any] | None = None,
        prefix: str = "",
    ) -> dict[str, Any]:
        if distinct_id is None and to is None:
            raise FynoValidationError(f"{prefix}distinct_id", "give distinct_id, to, or both")
        item: dict[str, Any] = {}
        if distinct_id is not None:
            item["distinct_id"] = check.check_distinct_id(distinct_id, f"{prefix}distinct_id")
        if to is not None:
            item["to"] = check.check_to(to, f"{prefix}to")
        if data is not None:
            item["data"] = check.check_data(data, f"{prefix}data")
        if callback is not None:
            item["callback"] = check.check_callback(callback, f"{prefix}callback")
        return item

    # -- profiles ----------------------------------------------------------------

    def create_profile(
        self,
        distinct_id: str,
        *,
        name: str | None = None,
        status: int | None = None,
        timezone: str | None = None,
        channel: Mapping[str, Any] | None = None,
    ) -> Acknowledgement:
        """Create a profile. Raises FynoAlreadyExistsError if the id is taken."""
        body: dict[str, Any] = {"distinct_id": check.check_distinct_id(distinct_id)}
        body.update(self._profile_fields(name=name, status=status, timezone=timezone))
        if channel is not None:
            body["channel"] = check.check_profile_channel(channel)
        return Acknowledgement.from_json(self._request("create_profile", body=body))

    def get_profile(self, distinct_id: str) -> Profile:
        """Fetch a profile. Raises FynoNotFoundError if there is none."""
        path = {"distinct_id": check.check_distinct_id(distinct_id)}
        return Profile.from_json(self._request("get_profile", path))

    def update_profile(
        self,
        distinct_id: str,
        *,
        new_distinct_id: str | None = None,
        name: str | None = None,
        status: int | None = None,
        timezone: str | None = None,
        channel: Mapping[str, Any] | None = None,
    ) -> Acknowledgement:
        """Update top-level fields; keys left out stay unchanged.

        ``channel`` REPLACES all channel data, push/inapp tokens included; use
        :meth:`update_channels` to change some channels only.
        """
        path = {"distinct_id": check.check_distinct_id(distinct_id)}
        body: dict[str, Any] = {}
        if new_distinct_id is not None:
            body["distinct_id"] = check.check_distinct_id(new_distinct_id, "new_distinct_id")
        body.update(self._profile_fields(name=name, status=status, timezone=timezone))
        if channel is not None:
            body["channel"] = check.check_profile_channel(channel)
        return Acknowledgement.from_json(self._request("update_profile", path, body=body))

    @staticmethod
    def _profile_fields(
        *, name: str | None, status: int | None, timezone: str | None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if name is not None:
            if not isinstance(name, str):
                raise FynoValidationError("name", "must be a string")
            fields["name"] = name
        if status is not None:
            fields["status"] = check.check_status(status)
        if timezone is not None:
            fields["timezone"] = check.check_timezone(timezone)
        return fields

    def merge_profiles(self, source_distinct_id: str, target_distinct_id: str) -> Acknowledgement:
        """Merge the source profile into the target (renames it if the target is absent)."""
        path = {
            "source_distinct_id": check.check_distinct_id(source_distinct_id, "source_distinct_id"),
            "target_distinct_id": check.check_distinct_id(target_distinct_id, "target_distinct_id"),
        }
        return Acknowledgement.from_json(self._request("merge_profiles", path))

    def delete_profiles(self, distinct_ids: Iterable[str]) -> Acknowledgement:
        """Delete one or more profiles in one call."""
        body = {"distinct_id": check.check_distinct_ids(distinct_ids, "distinct_ids")}
        return Acknowledgement.from_json(self._request("delete_profiles", body=body))

    def update_channels(self, distinct_id: str, channel: Mapping[str, Any]) -> Acknowledgement:
        """Set single-destination channels and ADD push/inapp tokens (PATCH)."""
        path = {"distinct_id": check.check_distinct_id(distinct_id)}
        body = {"channel": check.check_profile_channel(channel)}
        return Acknowledgement.from_json(self._request("update_channels", path, body=body))

    def delete_channels(
        self,
        distinct_id: str,
        *,
        channels: Sequence[str] | None = None,
        push_tokens: Sequence[str] | None = None,
        inapp_tokens: Sequence[str] | None = None,
    ) -> Acknowledgement:
        """Wipe whole ``channels``, or remove specific push/inapp tokens (not both at once)."""
        path = {"distinct_id": check.check_distinct_id(distinct_id)}
        has_tokens = push_tokens is not None or inapp_tokens is not None
        if channels is not None and has_tokens:
            raise FynoValidationError(
                "channels", "give channels or push_tokens/inapp_tokens, not both"
            )
        body: dict[str, Any]
        if channels is not None:
            body = {"channel": check.check_channel_names(channels, "channels")}
        elif has_tokens:
            body = {}
            for key, tokens in (("push", push_tokens), ("inapp", inapp_tokens)):
                if tokens is not None:
                    body[key] = check.check_unset(tokens, f"{key}_tokens")
        else:
            raise FynoValidationError("channels", "give channels or tokens to delete")
        return Acknowledgement.from_json(self._request("delete_channels", path, body=body))

    # -- preferences ---------------------------------------------------------------

    def get_preferences(self, distinct_id: str, *, event_list: bool = False) -> Preferences:
        """The user's preferences per topic; ``event_list`` adds each topic's events."""
        params = {
            "distinct_id": check.check_distinct_id(distinct_id),
            "event_list": "true" if event_list else "false",
        }
        return Preferences.from_json(self._request("get_preferences", params=params))

    def set_preferences(
        self, distinct_id: str, preferences: Mapping[str, Mapping[str, str]]
    ) -> PreferenceUpdate:
        """Set ``{subscription_id or "all": {channel: "opted-in"|"opted-out"}}``."""
        params = {"distinct_id": check.check_distinct_id(distinct_id)}
        body = {"user_preference": check.check_user_preference(preferences)}
        reply = self._request("set_preferences", params=params, body=body)
        return PreferenceUpdate.from_json(reply)

    def set_subscription(
        self, subscription_id: str, *, distinct_id: str, channel: str, status: str
    ) -> PreferenceUpdate:
        """Opt one user in or out of one channel of a topic (``subscription_id`` may be "all")."""
        path = {"subscription_id": check.check_text(subscription_id, "subscription_id")}
        body = {
            "channel": check.check_preference_channel(channel),
            "distinct_id": check.check_distinct_id(distinct_id),
            "status": check.check_preference_value(status, "status"),
        }
        reply = self._request("set_subscription", path, body=body)
        return PreferenceUpdate.from_json(reply)

    # -- verify ------------------------------------------------------------------

    def verify_otp(
        self, otp: str, *, request_id: str | None = None, destination: str | None = None
    ) -> bool:
        """True if the OTP is valid, False if Fyno says it is wrong; other errors raise.

        Give ``request_id`` (from the event reply) or ``destination``, not both.
        """
        params = {"otp": check.check_text(otp, "otp")}
        if (request_id is None) == (destination is None):
            raise FynoValidationError("request_id", "give request_id or destination")
        if request_id is not None:
            params["request_id"] = check.check_text(request_id, "request_id")
        else:
            params["destination"] = check.check_text(destination, "destination")
        try:
            self._request("verify_otp", params=params)
        except FynoBadRequestError as exc:
            if exc.message.strip().lower() == WRONG_OTP_MESSAGE.lower():
                return False
            raise
        return True

    # -- user properties -----------------------------------------------------------

    def _property_call(self, name: str, distinct_id: str, operator: str, values: Any) -> Any:
        body = {"distinct_id": check.check_distinct_id(distinct_id), operator: values}
        return self._request(name, body=body)

    def set_properties(self, distinct_id: str, properties: Mapping[str, Any]) -> PropertyUpdate:
        """``$set``: write properties (creates the profile if unknown)."""
        values = check.check_property_values(properties, "properties")
        return PropertyUpdate.from_json(
            self._property_call("set_properties", distinct_id, "$set", values)
        )

    def set_properties_once(
        self, distinct_id: str, properties: Mapping[str, Any]
    ) -> PropertyUpdate:
        """``$once``: write only the properties that are not set yet."""
        values = check.check_property_values(properties, "properties")
        return PropertyUpdate.from_json(
            self._property_call("set_properties_once", distinct_id, "$once", values)
        )

    def increment_properties(
        self, distinct_id: str, increments: Mapping[str, float]
    ) -> PropertyUpdate:
        """``$add``: add numbers (negative to decrement). Not retried once sent."""
        values = check.check_number_values(increments, "increments")
        return PropertyUpdate.from_json(
            self._property_call("increment_properties", distinct_id, "$add", values)
        )

    def append_to_lists(self, distinct_id: str, values: Mapping[str, Any]) -> PropertyUpdate:
        """``$append``: one value per list property."""
        checked = check.check_list_values(values, "values")
        return PropertyUpdate.from_json(
            self._property_call("append_to_lists", distinct_id, "$append", checked)
        )

    def remove_from_lists(self, distinct_id: str, values: Mapping[str, Any]) -> PropertyUpdate:
        """``$remove``: one value per list property."""
        checked = check.check_list_values(values, "values")
        return PropertyUpdate.from_json(
            self._property_call("remove_from_lists", distinct_id, "$remove", checked)
        )

    def unset_properties(self, distinct_id: str, names: Iterable[str]) -> PropertyUpdate:
        """``$unset``: remove properties of any type."""
        checked = check.check_unset(names, "names")
        return PropertyUpdate.from_json(
            self._property_call("unset_properties", distinct_id, "$unset", checked)
        )

    def batch_properties(self, batch: Iterable[Mapping[str, Any]]) -> BatchPropertyUpdate:
        """Several users' property actions in one call.

        Each item is ``{"distinct_id": ..., "action": {"$set": {...}, "$unset": [...], ...}}``.
        """
        if isinstance(batch, (str, bytes, Mapping)):
            raise FynoValidationError("batch", "must be a list of items")
        items = []
        for index, item in enumerate(batch):
            where = f"batch[{index}]"
            if not isinstance(item, Mapping):
                raise FynoValidationError(where, "must be a mapping")
            items.append(
                {
                    "distinct_id": check.check_distinct_id(
                        item.get("distinct_id"), f"{where}.distinct_id"
                    ),
                    "action": check.check_batch_action(item.get("action"), f"{where}.action"),
                }
            )
        if not items:
            raise FynoValidationError("batch", "must hold at least one item")
        reply = self._request("batch_properties", body={"batch": items})
        return BatchPropertyUpdate.from_json(reply)

    # -- suppressions ----------------------------------------------------------------

    def list_suppressions(self) -> list[Suppression]:
        """Every entry of the workspace's suppression list."""
        reply = self._request("list_suppressions")
        records = reply if isinstance(reply, list) else []
        return [Suppression.from_json(record) for record in records]

    def add_suppression(
        self,
        channel: str,
        *,
        distinct_id: str | None = None,
        destination: str | None = None,
        description: str | None = None,
    ) -> Acknowledgement:
        """Suppress a channel for a ``distinct_id`` or a ``destination`` (give one)."""
        body: dict[str, Any] = {"channel": check.check_preference_channel(channel)}
        if (distinct_id is None) == (destination is None):
            raise FynoValidationError("distinct_id", "give distinct_id or destination")
        if distinct_id is not None:
            body["distinct_id"] = check.check_distinct_id(distinct_id)
        else:
            body["destination"] = check.check_text(destination, "destination")
        if description is not None:
            body["description"] = check.check_text(description, "description")
        return Acknowledgement.from_json(self._request("add_suppression", body=body))

    def delete_suppression(
        self,
        *,
        id: str | None = None,  # Fyno calls it _id
        distinct_id: str | None = None,
        destination: str | None = None,
    ) -> Acknowledgement:
        """Delete suppression entries by record ``id``, ``distinct_id`` or ``destination``."""
        params: dict[str, str] = {}
        if id is not None:
            params["_id"] = check.check_text(id, "id")
        if distinct_id is not None:
            params["distinct_id"] = check.check_distinct_id(distinct_id)
        if destination is not None:
            params["destination"] = check.check_text(destination, "destination")
        if len(params) != 1:
            raise FynoValidationError("id", "give exactly one of id, distinct_id, destination")
        return Acknowledgement.from_json(self._request("delete_suppression", params=params))
