"""The control API under ``/_emulator/``: a thin JSON layer over the
:class:`~django_fyno.emulator.app.Emulator` methods. It needs no Fyno auth and
faults never apply to it.

``?workspace=WSID`` addresses one workspace (404 when the emulator serves no
such workspace); without it, an endpoint addresses the default (first)
workspace, except ``POST reset``, which then resets every workspace, and
``GET health``, which lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .app import Emulator
    from .workspace import Workspace

__all__ = ["PREFIX", "handle"]

PREFIX = "/_emulator"

Reply = tuple[int, Any]
# The Emulator itself (its default workspace; every workspace for reset) or one Workspace.
Target: TypeAlias = "Emulator | Workspace"
Route = Callable[[Target, dict[str, str], Any], Reply]
EmulatorRoute = Callable[["Emulator", dict[str, str], Any], Reply]
WORKSPACE_PARAMETER = "workspace"


def _ok(message: str) -> Reply:
    return 200, {"_message": message, "status": "ok"}


def _bad(message: str, status: int = 400) -> Reply:
    return status, {"_message": message, "status": "error"}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _reset(target: Target, query: dict[str, str], body: Any) -> Reply:
    target.reset()
    if query.get(WORKSPACE_PARAMETER):
        return _ok(f"Workspace {target.wsid} reset")
    return _ok("Emulator reset")


def _state(target: Target, query: dict[str, str], body: Any) -> Reply:
    return 200, target.state()


def _get_faults(target: Target, query: dict[str, str], body: Any) -> Reply:
    return 200, target.faults_config()


def _set_faults(target: Target, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    faults = body.get("faults") or {}
    if not isinstance(faults, dict):
        raise ValueError("faults must map '*' or an operation name to its knobs")
    target.set_faults(faults, seed=body.get("seed"), replace=bool(body.get("replace")))
    return 200, target.faults_config()


def _clear_faults(target: Target, query: dict[str, str], body: Any) -> Reply:
    target.clear_faults(query.get("operation"))
    return 200, target.faults_config()


def _get_events(target: Target, query: dict[str, str], body: Any) -> Reply:
    allowed = target.events
    return 200, {"events": sorted(allowed) if allowed is not None else None}


def _set_events(target: Target, query: dict[str, str], body: Any) -> Reply:
    names = _object(body).get("events")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(name, str) for name in names)
    ):
        raise ValueError("events must be a list of event names, or null for any event")
    target.set_events(names)
    return _get_events(target, query, None)


def _get_preferences(target: Target, query: dict[str, str], body: Any) -> Reply:
    return 200, {"sections": target.preference_config()}


def _set_preferences(target: Target, query: dict[str, str], body: Any) -> Reply:
    sections = _object(body).get("sections")
    if not isinstance(sections, dict):
        raise ValueError("sections must map a section name to a list of topics")
    target.configure_preferences(sections)
    return _get_preferences(target, query, None)


def _get_otp(target: Target, query: dict[str, str], body: Any) -> Reply:
    code = target.otp_for(request_id=query.get("request_id"), destination=query.get("destination"))
    return 200, {"otp": code}


def _set_otp(target: Target, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    code = body.get("code")
    if code is not None and not isinstance(code, (str, int)):
        raise ValueError("code must be a string of digits, or null")
    target.set_otp(
        None if code is None else str(code),
        destination=body.get("destination"),
        request_id=body.get("request_id"),
    )
    return _ok("OTP configured")


def _get_requests(target: Target, query: dict[str, str], body: Any) -> Reply:
    return 200, {"requests": target.requests()}


def _clear_requests(target: Target, query: dict[str, str], body: Any) -> Reply:
    target.clear_request_log()
    return _ok("Request log cleared")


def _get_webhook(target: Target, query: dict[str, str], body: Any) -> Reply:
    return 200, {"url": target.webhook_url}


def _set_webhook(target: Target, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("url must be an http(s) URL")
    return 200, target.register_webhook(url, verify=bool(body.get("verify")))


def _delete_webhook(target: Target, query: dict[str, str], body: Any) -> Reply:
    target.unregister_webhook()
    return _ok("Webhook removed")


def _delivery_report(target: Target, query: dict[str, str], body: Any) -> Reply:
    body = _object(body)
    results = target.send_delivery_report(
        request_id=body.get("request_id"),
        custom_id=body.get("custom_id"),
        status=str(body.get("status") or "delivered"),
        channel=body.get("channel"),
    )
    return 200, {"reports": results}


ROUTES: dict[str, dict[str, Route]] = {
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


def _health(emulator: Emulator, query: dict[str, str], body: Any) -> Reply:
    return 200, {"status": "ok", "wsid": emulator.wsid, "workspaces": list(emulator.workspaces)}


# Endpoints about the whole emulator, never about one workspace.
EMULATOR_ROUTES: dict[str, dict[str, EmulatorRoute]] = {"/health": {"GET": _health}}


def handle(emulator: Emulator, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
    """Answer one control request (``path`` still starts with ``/_emulator``)."""
    name = path[len(PREFIX) :].rstrip("/") or "/"
    routes = ROUTES.get(name, {})
    whole = EMULATOR_ROUTES.get(name, {})
    allowed = [*routes, *whole]
    if not allowed:
        return _bad(f"Unknown control endpoint {path}", 404)
    if method not in allowed:
        return _bad(f"{method} is not allowed on {path}; use {', '.join(allowed)}", 405)
    target: Target = emulator
    if WORKSPACE_PARAMETER in query:
        wsid = query[WORKSPACE_PARAMETER]
        if not wsid:
            return _bad(f"?{WORKSPACE_PARAMETER}= must name a workspace")
        try:
            target = emulator.workspace(wsid)
        except LookupError as exc:
            return _bad(str(exc), 404)
    try:
        if method in whole:
            return whole[method](emulator, query, body)
        return routes[method](target, query, body)
    except (ValueError, LookupError, TypeError) as exc:
        return _bad(str(exc))
