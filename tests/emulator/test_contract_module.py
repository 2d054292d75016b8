"""The vendored contract, its 23 operations and the documented relaxations."""

from pathlib import Path

import pytest

from django_fyno.emulator import contract


def test_the_contract_has_23_operations_and_all_are_named() -> None:
    spec = contract.load_spec()
    in_spec = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    }
    assert len(in_spec) == 23
    assert set(contract.OPERATIONS.values()) == in_spec


def test_the_contract_is_shipped_as_package_data() -> None:
    vendored = Path(contract.__file__).with_name("fyno-openapi.yaml")
    assert vendored.read_text().startswith("# Fyno REST API")


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/FY1/live/profiles/delete", "delete_profiles"),
        ("GET", "/FY1/live/profiles/delete", "get_profile"),
        ("POST", "/FY1/test/profiles/properties/set", "set_properties"),
        ("PATCH", "/FY1/live/profiles/a/merge/b", "merge_profiles"),
        ("DELETE", "/FY1/suppressions", "delete_suppression"),
    ],
)
def test_requests_find_their_operation(method: str, path: str, name: str) -> None:
    found = contract.find_operation(method, path)
    assert found is not None
    assert found[0].name == name


def test_unknown_routes_find_nothing() -> None:
    assert contract.find_operation("GET", "/FY1/live/nothing-here") is None
    assert contract.find_operation("DELETE", "/FY1/live/event") is None


def _request_problems(name: str, body: object) -> list[str]:
    op = contract.operation(name)
    return contract.validate_request(op, {"WSID": "FY1", "version": "live"}, {}, body)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        # Each of these is documented as allowed but rejected by the strict schema.
        ("send_event", {"event": "e", "distinct_id": "u1", "to": {"email": "a@b.co"}}),
        ("add_suppression", {"distinct_id": "u1", "destination": "a@b.co", "channel": "email"}),
        ("send_bulk", {"event": "e", "batch": [{"distinct_id": "u1"}, {"to": {"sms": "+1"}}]}),
        ("set_properties", {"distinct_id": "u1", "$set": {"since": "2020-10-01"}}),
        ("delete_channels", {"push": ["token-1"]}),
    ],
)
def test_relaxations_accept_documented_payloads(name: str, body: object) -> None:
    assert _request_problems(name, body) == []


@pytest.mark.parametrize(
    ("name", "body", "problem"),
    [
        ("send_event", {"distinct_id": "u1"}, "matches none"),
        ("delete_channels", {"channel": ["sms"], "push": ["t"]}, "more than one"),
        ("delete_channels", {}, "matches none"),
        ("increment_properties", {"distinct_id": "u1", "$add": {"n": "1"}}, "is not of type"),
        ("delete_profiles", {"distinct_id": "u1"}, "is not of type 'array'"),
    ],
)
def test_violations_are_reported_clearly(name: str, body: object, problem: str) -> None:
    problems = _request_problems(name, body)
    assert problems
    assert problem in " ".join(problems)


def test_required_query_parameters_and_version_are_checked() -> None:
    op = contract.operation("verify_otp")
    problems = contract.validate_request(op, {"WSID": "FY1", "version": "prod"}, {}, None)
    assert sorted(problems) == sorted(
        [
            "otp: required query parameter is missing",
            "version: 'prod' is not one of ['live', 'test']",
        ]
    )


def test_replies_are_checked_against_their_status() -> None:
    op = contract.operation("get_profile")
    assert contract.validate_reply(op, 400, {"_message": "x", "status": "error"}) == []
    assert contract.validate_reply(op, 200, {"distinct_id": "u1"})
    # Undocumented error statuses (faults) have no schema; undocumented successes are wrong.
    assert contract.validate_reply(op, 503, "<html>") == []
    assert contract.validate_reply(op, 204, None)


def test_placeholder_names_stand_for_any_key() -> None:
    topic = {
        "subscription_id": "S1",
        "name": "Offers",
        "description": "",
        "channel_config": {"sms": "required"},
        "preference": {"sms": "opted-in"},
        "is_global_opted_out": {},
        "updated_at": {},
        "notification_events": [],
    }
    reply = {"meta": {"all": {"preference": {}, "updated_at": {}}}, "result": {"General": [topic]}}
    assert contract.validate_reply(contract.operation("get_preferences"), 200, reply) == []
    bad = {**reply, "result": {"General": [{**topic, "preference": {"sms": "maybe"}}]}}
    assert contract.validate_reply(contract.operation("get_preferences"), 200, bad)
    update = contract.operation("set_preferences")
    assert contract.validate_reply(update, 200, {"S1": {"email": "opted-out"}}) == []
    assert contract.validate_reply(update, 200, {"S1": {"email": "nope"}})
    body = {"user_preference": {"all": {"email": "opted-out"}}}
    assert contract.validate_request(update, {"version": "live"}, {"distinct_id": "u"}, body) == []
    body = {"user_preference": {"S1": {"email": "off"}}}
    assert contract.validate_request(update, {"version": "live"}, {"distinct_id": "u"}, body)
