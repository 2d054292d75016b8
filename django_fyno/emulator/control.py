"""The control API under ``/_emulator/``: a thin JSON layer over the
:class:`~django_fyno.emulator.app.Emulator` methods. It needs no Fyno auth and
faults never apply to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Emulator

__all__ = ["PREFIX", "handle"]

PREFIX = "/_emulator"

Reply = tuple[int, Any]
Route = Callable[["Emulator", dict[str, str], Any], Reply]


def _ok(message: str) -> Reply:
    return 200, {"_message": message, "status": "ok"}


def _bad(message: str, status: int = 400) -> Reply:
    return status, {"_message": message, "status": "error"}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _reset(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    emulator.reset()
    return _ok("Emulator reset")


def _state(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, emulator.state()


def _get_faults(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, emulator.faults_config()


def _set_faults(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    faults = body.get("faults") or {}
    if not isinstance(faults, dict):
        raise ValueError("faults must map '*' or an operation name to its knobs")
    emulator.set_faults(faults, seed=body.get("seed"), replace=bool(body.get("replace")))
    return 200, emulator.faults_config()


def _clear_faults(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    emulator.clear_faults(query.get("operation"))
    return 200, emulator.faults_config()


def _get_events(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    allowed = emulator.events
    return 200, {"events": sorted(allowed) if allowed is not None else None}


def _set_events(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    names = _object(body).get("events")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(name, str) for name in names)
    ):
        raise ValueError("events must be a list of event names, or null for any event")
    emulator.set_events(names)
    return _get_events(emulator, query, None)


def _get_preferences(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, {"sections": emulator.preference_config()}


def _set_preferences(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    sections = _object(body).get("sections")
    if not isinstance(sections, dict):
        raise ValueError("sections must map a section name to a list of topics")
    emulator.configure_preferences(sections)
    return _get_preferences(emulator, query, None)


def _get_otp(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    code = emulator.otp_for(
        request_id=query.get("request_id"), destination=query.get("destination")
    )
    return 200, {"otp": code}


def _set_otp(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    code = body.get("code")
    if code is not None and not isinstance(code, (str, int)):
        raise ValueError("code must be a string of digits, or null")
    emulator.set_otp(
        None if code is None else str(code),
        destination=body.get("destination"),
        request_id=body.get("request_id"),
    )
    return _ok("OTP configured")


def _get_requests(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, {"requests": emulator.requests()}


def _clear_requests(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    emulator.clear_request_log()
    return _ok("Request log cleared")


def _get_webhook(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, {"url": emulator.webhook_url}


def _set_webhook(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("url must be an http(s) URL")
    return 200, emulator.register_webhook(url, verify=bool(body.get("verify")))


def _delete_webhook(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    emulator.unregister_webhook()
    return _ok("Webhook removed")


def _delivery_report(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    results = emulator.send_delivery_report(
        request_id=body.get("request_id"),
        custom_id=body.get("custom_id"),
        status=str(body.get("status") or "delivered"),
        channel=body.get("channel"),
    )
    return 200, {"reports": results}


def _health(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, {"status": "ok", "wsid": emulator.wsid}


ROUTES: dict[str, dict[str, Route]] = {
    "/health": {"GET": _health},
    "/reset": {"POST": _reset},
    "/state": {"GET": _state},
    "/faults": {"GET": _get_faults, "POST": _set_faults, "DELETE": _clear_faults},
    "/events": {"GET": _get_events, "POST": _set_events},
    "/preferences": {"GET": _get_preferences, "POST": _set_preferences},
    "/otp": {"GET": _get_otp, "POST": _set_otp},
    "/requests": {"GET": _get_requests, "DELETE": _clear_requests},
    "/webhook": {"GET": _get_webhook, "POST": _set_webhook, "DELETE": _delete_webhook},
    "/delivery-report": {"POST": _delivery_report},
}


def handle(emulator: Emulator, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
    """Answer one control request (``path`` still starts with ``/_emulator``)."""
    routes = ROUTES.get(path[len(PREFIX) :].rstrip("/") or "/")
    if routes is None:
        return _bad(f"Unknown control endpoint {path}", 404)
    route = routes.get(method)
    if route is None:
        return _bad(f"{method} is not allowed on {path}; use {', '.join(routes)}", 405)
    try:
        return route(emulator, query, body)
    except (ValueError, LookupError, TypeError) as exc:
        return _bad(str(exc))
