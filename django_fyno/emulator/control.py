"""The control API under ``/_emulator/``: a thin JSON layer over the
:class:`~django_fyno.emulator.app.Emulator` methods. It needs no Fyno auth and
faults never apply to it.

``?workspace=WSID`` addresses one workspace (404 when the emulator serves no
such workspace); without it, an endpoint addresses the default (first)
workspace, except ``POST reset``, which then resets every workspace, and
``GET health``, which lists them all.

It is for tests and scripts, never for a web page: a request carrying an
``Origin`` header other than the emulator's own is a 403, and a body must
come with ``Content-Type: application/json`` (415 otherwise), which no page
of another origin can send without a CORS preflight the emulator never
grants. So a page open in the developer's browser cannot reset the emulator
or point its webhook sender somewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .app import Emulator
    from .workspace import Workspace

__all__ = ["PREFIX", "handle", "refuse_content_type", "refuse_origin"]

PREFIX = "/_emulator"
JSON_MEDIA_TYPE = "application/json"
# The emulator's own origins are on its own port, by these names or its address.
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_DEFAULT_PORTS = {"http": "80", "https": "443"}

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


def _own_origins(environ: Mapping[str, Any]) -> set[str]:
    """The origins of the emulator itself: its scheme and port, its address or loopback."""
    scheme = str(environ.get("wsgi.url_scheme") or "http").lower()
    port = str(environ.get("SERVER_PORT") or "")
    suffix = "" if port in ("", _DEFAULT_PORTS.get(scheme)) else f":{port}"
    name = str(environ.get("SERVER_NAME") or "").lower()
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 address
    hosts = {name, *_LOOPBACK_HOSTS} - {""}
    return {f"{scheme}://{host}{suffix}" for host in hosts}


def refuse_origin(environ: Mapping[str, Any]) -> Reply | None:
    """A 403 for a request sent by a web page of another origin (None: go on)."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is None or str(origin).strip().lower() in _own_origins(environ):
        return None
    shown = str(origin)[:200]
    return _bad(f"The control API refuses cross-origin requests (Origin: {shown})", 403)


def refuse_content_type(environ: Mapping[str, Any], raw: bytes) -> Reply | None:
    """A 415 for a body that does not say it is JSON (None: go on)."""
    if not raw.strip():
        return None
    media_type = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    if media_type == JSON_MEDIA_TYPE:
        return None
    return _bad(
        f"The control API takes JSON: send the body with Content-Type: {JSON_MEDIA_TYPE}", 415
    )


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
