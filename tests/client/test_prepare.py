"""``prepare_call`` builds, byte for byte, the request ``Session.prepare_request`` builds."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from django_fyno.client import FynoClient
from django_fyno.client.transport import build_session, prepare_call

SESSION = build_session(
    "sk-SECRET-123",
    pool_size=1,
    headers={"User-Agent": "django-fyno/test", "Accept": "application/json"},
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "post"])
ENDPOINTS = st.sampled_from(
    ["https://api.fyno.io/v1", "HTTPS://API.Fyno.IO:443/v1", "http://127.0.0.1:8000/v1"]
)
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def _reference(method: str, url: str, params: Any, body: Any) -> requests.PreparedRequest:
    return SESSION.prepare_request(requests.Request(method, url, params=params, json=body))


def _same(ours: requests.PreparedRequest, theirs: requests.PreparedRequest) -> None:
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert ours.body == theirs.body


@settings(max_examples=200, deadline=None)
@given(
    method=METHODS,
    endpoint=ENDPOINTS,
    segments=st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=12), min_size=1, max_size=3
    ),
    params=st.none() | st.dictionaries(TEXT, TEXT, max_size=3),
    body=st.none() | JSON,
)
def test_the_same_request_as_prepare_request(
    method: str, endpoint: str, segments: list[str], params: Any, body: Any
) -> None:
    # As the client builds its URLs: every path value quoted whole.
    url = endpoint + "".join("/" + quote(segment, safe="") for segment in segments)
    try:
        theirs = _reference(method, url, params, body)
    except Exception as refusal:  # a lone surrogate in a parameter, say: the same refusal
        with pytest.raises(type(refusal)):
            prepare_call(SESSION, method, url, params=params, body=body)
        return
    _same(prepare_call(SESSION, method, url, params=params, body=body), theirs)


@pytest.mark.parametrize("body", [{}, [], "", 0, False])
def test_an_empty_body_is_still_sent_as_json(body: Any) -> None:
    url = "https://api.fyno.io/v1/FY1/live/profiles"
    ours = prepare_call(SESSION, "POST", url, body=body)
    _same(ours, _reference("POST", url, None, body))
    assert ours.headers["Content-Type"] == "application/json"


def test_the_key_is_sent_and_the_headers_are_not_shared() -> None:
    url = "https://api.fyno.io/v1/FY1/live/profiles/u1"
    first = prepare_call(SESSION, "DELETE", url)
    assert first.headers["Authorization"] == "Bearer sk-SECRET-123"
    assert first.headers["Content-Length"] == "0"
    first.headers["X-Changed"] = "1"
    assert "X-Changed" not in prepare_call(SESSION, "DELETE", url).headers
    assert "X-Changed" not in SESSION.headers


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"a": [math.nan]}])
def test_nan_is_refused_as_requests_refuses_it(bad: Any) -> None:
    url = "https://api.fyno.io/v1/FY1/live/event"
    with pytest.raises(requests.exceptions.InvalidJSONError):
        _reference("POST", url, None, bad)
    with pytest.raises(requests.exceptions.InvalidJSONError):
        prepare_call(SESSION, "POST", url, body=bad)


def test_calls_go_through_session_send_where_mocking_libraries_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests-mock replaces Session.send (responses patches the adapter): both must see calls.
    seen: list[str] = []

    def fake_send(session: requests.Session, request: Any, **kwargs: Any) -> requests.Response:
        seen.append(f"{request.method} {request.url}")
        response = requests.Response()
        response.status_code, response._content = 200, b'{"_message": "ok"}'
        response.request = request
        return response

    monkeypatch.setattr(requests.Session, "send", fake_send)
    client = FynoClient(wsid="FY1", api_key="k", endpoint="https://api.fyno.example/v1")
    client.delete_profiles(["u1"])
    assert seen == ["POST https://api.fyno.example/v1/FY1/live/profiles/delete"]


def test_cookies_a_load_balancer_sets_are_sent_back() -> None:
    client = FynoClient(wsid="FY1", api_key="k", endpoint="https://api.fyno.example/v1")
    url = "https://api.fyno.example/v1/FY1/live/profiles/delete"
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            url,
            json={"_message": "ok"},
            headers={"Set-Cookie": "AWSALB=sticky; Path=/"},
        )
        mock.add(responses.POST, url, json={"_message": "ok"})
        client.delete_profiles(["u1"])
        client.delete_profiles(["u1"])
        first, second = (call.request for call in mock.calls)
    assert "Cookie" not in first.headers
    assert second.headers["Cookie"] == "AWSALB=sticky"
    assert second.headers["Authorization"] == "Bearer k"


def test_a_session_hook_still_runs() -> None:
    client = FynoClient(wsid="FY1", api_key="k", endpoint="https://api.fyno.example/v1")
    seen: list[int] = []
    client._session.hooks["response"].append(
        lambda response, **_: seen.append(response.status_code)
    )
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://api.fyno.example/v1/FY1/live/profiles/delete", json={})
        client.delete_profiles(["u1"])
    assert seen == [200]
