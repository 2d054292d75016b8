"""The Fyno API contract: the vendored OpenAPI document, its 23 operations, and
validators for their requests and replies.

The document is Fyno's own, kept as it is (``fyno-openapi.yaml`` beside this
module). A few of its schemas reject payloads that Fyno's docs allow; those are
relaxed here, in :func:`_relax`, each with the reason, and nowhere else.

Needs the ``emulator`` extra (PyYAML, openapi-schema-validator, fastjsonschema).

Each schema is checked by two validators built from it: fastjsonschema's
compiled one (about twenty times faster on a bulk of 100 events) says whether
a document conforms; only when it does not does openapi-schema-validator,
the reference, say what is wrong. The reference has the last word: a
document it accepts is accepted whatever the fast one said, so the two can
only disagree towards the reference (``tests/emulator/test_contract_fast.py``
checks that they agree).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import yaml
from openapi_schema_validator import OAS30Validator

__all__ = [
    "OPERATIONS",
    "Checker",
    "ContractViolation",
    "Operation",
    "find_operation",
    "load_spec",
    "operation",
    "route_path",
    "timezones",
    "validate_reply",
    "validate_request",
]

# Our name for each of the contract's 23 operations: (method, path template).
# The client's method of the same name calls it; the emulator routes by it.
OPERATIONS: dict[str, tuple[str, str]] = {
    "send_event": ("POST", "/{WSID}/{version}/event"),
    "send_bulk": ("POST", "/{WSID}/{version}/event/bulk"),
    "create_profile": ("POST", "/{WSID}/{version}/profiles"),
    "get_profile": ("GET", "/{WSID}/{version}/profiles/{distinct_id}"),
    "update_profile": ("PUT", "/{WSID}/{version}/profiles/{distinct_id}"),
    "merge_profiles": (
        "PATCH",
        "/{WSID}/{version}/profiles/{source_distinct_id}/merge/{target_distinct_id}",
    ),
    "delete_profiles": ("POST", "/{WSID}/{version}/profiles/delete"),
    "update_channels": ("PATCH", "/{WSID}/{version}/profiles/{distinct_id}/channel"),
    "delete_channels": ("POST", "/{WSID}/{version}/profiles/{distinct_id}/channel/delete"),
    "get_preferences": ("GET", "/{WSID}/{version}/subscriptions/preference"),
    "set_preferences": ("PUT", "/{WSID}/{version}/subscriptions/preference"),
    "set_subscription": ("POST", "/{WSID}/{version}/subscriptions/list/{subscription_id}/user"),
    "verify_otp": ("POST", "/{WSID}/{version}/verify/validate"),
    "set_properties": ("POST", "/{WSID}/{version}/profiles/properties/set"),
    "set_properties_once": ("POST", "/{WSID}/{version}/profiles/properties/set-once"),
    "increment_properties": ("POST", "/{WSID}/{version}/profiles/properties/numerical-add"),
    "append_to_lists": ("POST", "/{WSID}/{version}/profiles/properties/list-append"),
    "remove_from_lists": ("POST", "/{WSID}/{version}/profiles/properties/list-remove"),
    "unset_properties": ("POST", "/{WSID}/{version}/profiles/properties/unset"),
    "batch_properties": ("POST", "/{WSID}/{version}/profiles/properties/batch"),
    "list_suppressions": ("GET", "/{WSID}/suppressions"),
    "add_suppression": ("POST", "/{WSID}/suppressions"),
    "delete_suppression": ("DELETE", "/{WSID}/suppressions"),
}


class ContractViolation(ValueError):
    """A request or reply does not conform to the contract."""


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    template: str
    request_schema: dict[str, Any] | None
    required_query: frozenset[str]
    allowed_query: frozenset[str]
    reply_schemas: dict[int, dict[str, Any] | None]
    validators: dict[str, Checker] = field(repr=False, compare=False)
    success_status: int
    _regex: re.Pattern[str] = field(repr=False, compare=False)

    def match(self, path: str) -> dict[str, str] | None:
        found = self._regex.fullmatch(path)
        return found.groupdict() if found else None


def _spec_text() -> str:
    return resources.files(__package__).joinpath("fyno-openapi.yaml").read_text("utf-8")


@cache
def load_spec() -> dict[str, Any]:
    """The vendored OpenAPI document, as Fyno published it (no relaxations)."""
    spec: dict[str, Any] = yaml.safe_load(_spec_text())
    return spec


def _deref(node: Any, spec: dict[str, Any]) -> Any:
    """Inline every local ``$ref`` (the document has no recursive ones)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _deref(target, spec)
        return {key: _deref(value, spec) for key, value in node.items()}
    if isinstance(node, list):
        return [_deref(item, spec) for item in node]
    return node


def _relax(spec: dict[str, Any]) -> dict[str, Any]:
    """Fix the places where the published schemas reject what Fyno's docs allow.

    Each change is listed in the API notes' "pitfalls for strict validation".
    """
    spec = copy.deepcopy(spec)
    schemas = spec["components"]["schemas"]
    # An event with both distinct_id and `to` is documented ("to wins") but
    # matches all three oneOf alternatives; a suppression with both ids matches
    # two. anyOf accepts them and still requires one of the forms.
    schemas["version_event_body"]["anyOf"] = schemas["version_event_body"].pop("oneOf")
    schemas["add_suppression_list"]["anyOf"] = schemas["add_suppression_list"].pop("oneOf")
    # Bulk items require `event`, which lives at the top level of the body.
    for alternative in schemas["event_bulk_body"]["properties"]["batch"]["items"]["oneOf"]:
        alternative["required"] = [key for key in alternative["required"] if key != "event"]
    items = schemas["event_bulk_body"]["properties"]["batch"]["items"]
    items["anyOf"] = items.pop("oneOf")
    # A date string matches both `string` and `string, format: date`.
    for name in (
        "set_user_property_fields",
        "set_user_property_once_fields",
        "append_to_user_property_fields",
        "remove_from_user_property_list_fields",
    ):
        extra = schemas[name]["additionalProperties"]
        extra["anyOf"] = extra.pop("oneOf")
    # Deleting only push tokens (or only inapp ones) is documented, but the
    # schema requires both lists. One of them is enough; both forms at once
    # still match two alternatives of the outer oneOf and stay refused.
    token_form = schemas["channel_delete_body"]["oneOf"][1]
    token_form.pop("required")
    token_form["anyOf"] = [{"required": ["push"]}, {"required": ["inapp"]}]
    # Placeholder names used as literal keys: the preference reply "requires" a
    # section called `Section1`, the update reply and body a subscription called
    # `SXXXXXXXXX`. They stand for any section name / subscription id.
    responses = spec["components"]["responses"]
    _placeholder_to_any_key(
        responses["PrefProfileFetched"]["content"]["application/json"]["schema"]["properties"][
            "result"
        ],
        "Section1",
    )
    _placeholder_to_any_key(
        responses["SubscriptionUpdated"]["content"]["application/json"]["schema"], "SXXXXXXXXX"
    )
    _placeholder_to_any_key(
        schemas["update_subscription_multiple"]["properties"]["user_preference"], "SXXXXXXXXX"
    )
    # GET profile names `properties` and `channel_raw` as required, never described.
    fetched = spec["components"]["responses"]["ProfileFetched"]["content"]["application/json"]
    fetched["schema"]["required"] = [
        key for key in fetched["schema"]["required"] if key not in ("properties", "channel_raw")
    ]
    return spec


def _placeholder_to_any_key(schema: dict[str, Any], placeholder: str) -> None:
    schema["additionalProperties"] = schema["properties"].pop(placeholder)
    schema["required"] = [key for key in schema.get("required", []) if key != placeholder]


class Checker:
    """One schema's validators: a fast yes/no, and the reference for the reasons.

    No format checker in either: the docs' own examples break ``format: date``
    (a date-time).
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.reference = OAS30Validator(schema)
        self._compiled: Callable[[Any], Any] | None = None

    def _fast(self) -> Callable[[Any], Any]:
        # Compiled on first use: most of the contract's reply schemas never are.
        # use_default=False: never fill defaults into the document being checked.
        if self._compiled is None:
            self._compiled = fastjsonschema.compile(
                self.schema, use_formats=False, use_default=False
            )
        return self._compiled

    def conforms(self, instance: Any) -> bool:
        """The fast answer (the reference decides whenever this says no)."""
        try:
            self._fast()(instance)
        except Exception:  # a refusal, or input it cannot handle: ask the reference
            return False
        return True

    def problems(self, instance: Any) -> list[str]:
        """What is wrong with ``instance`` (an empty list: it conforms)."""
        if self.conforms(instance):
            return []
        return _errors(self.reference, instance)


def _validators(request: dict[str, Any] | None, replies: dict[int, Any]) -> dict[str, Checker]:
    # Built once per operation (validators are costly to build, cheap to run).
    found = {str(status): Checker(schema) for status, schema in replies.items() if schema}
    if request is not None:
        found["request"] = Checker(request)
    return found


def _body_schema(holder: dict[str, Any] | None) -> dict[str, Any] | None:
    if not holder:
        return None
    content = holder.get("content", {}).get("application/json")
    return content.get("schema") if content else None


def _path_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return re.compile(pattern)


@cache
def _operations() -> dict[str, Operation]:
    relaxed = _relax(load_spec())
    spec = _deref(relaxed, relaxed)
    found: dict[str, Operation] = {}
    for name, (method, template) in OPERATIONS.items():
        raw = spec["paths"][template][method.lower()]
        query = [p for p in raw.get("parameters", []) if p["in"] == "query"]
        replies = {int(code): _body_schema(reply) for code, reply in raw["responses"].items()}
        request = _body_schema(raw.get("requestBody"))
        found[name] = Operation(
            name=name,
            method=method,
            template=template,
            request_schema=request,
            required_query=frozenset(p["name"] for p in query if p.get("required")),
            allowed_query=frozenset(p["name"] for p in query),
            reply_schemas=replies,
            validators=_validators(request, replies),
            success_status=min(code for code in replies if code < 300),
            _regex=_path_regex(template),
        )
    return found


def operation(name: str) -> Operation:
    """The operation called ``name`` (a key of :data:`OPERATIONS`)."""
    return _operations()[name]


def route_path(path: str) -> str:
    """The path as Fyno routes it: one trailing slash is ignored.

    Fyno answers with Express, whose routing is not strict by default:
    ``/profiles/`` is ``/profiles`` (Fyno's own Node SDK sends the former).
    """
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def find_operation(method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    """Match a request (path relative to the API base) to an operation.

    Literal segments win over parameters, so ``/profiles/delete`` is the
    delete operation, not a profile called "delete".
    """
    candidates = [
        (op, params)
        for op in _operations().values()
        if op.method == method.upper() and (params := op.match(path)) is not None
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda found: found[0].template.count("{"))


def _errors(validator: OAS30Validator, instance: Any) -> list[str]:
    problems = []
    for error in validator.iter_errors(instance):
        where = "/".join(str(part) for part in error.absolute_path) or "body"
        if error.validator == "oneOf":
            # jsonschema's text embeds every alternative; say what went wrong instead.
            matched = "more than one" if "valid under each" in error.message else "none"
            problems.append(f"{where}: matches {matched} of the allowed forms")
        elif error.validator == "anyOf":
            problems.append(f"{where}: matches none of the allowed forms")
        else:
            problems.append(f"{where}: {error.message}")
    return sorted(problems)


def validate_request(
    op: Operation, path_params: dict[str, str], query: dict[str, str], body: Any
) -> list[str]:
    """Problems with a request to ``op`` (an empty list means it conforms)."""
    problems = []
    version = path_params.get("version")
    if version is not None and version not in ("live", "test"):
        problems.append(f"version: {version!r} is not one of ['live', 'test']")
    for name in sorted(op.required_query - set(query)):
        problems.append(f"{name}: required query parameter is missing")
    if op.request_schema is None:
        if body not in (None, b"", ""):
            problems.append("body: this operation takes no body")
    elif body is None:
        problems.append("body: a JSON body is required")
    else:
        problems.extend(op.validators["request"].problems(body))
    return problems


def validate_reply(op: Operation, status: int, body: Any) -> list[str]:
    """Problems with a reply from ``op``.

    A status the contract does not document (429, 5xx) has no schema to check.
    """
    if status not in op.reply_schemas:
        if status < 400:
            return [f"status: {status} is not a documented answer of {op.name}"]
        return []
    checker = op.validators.get(str(status))
    return checker.problems(body) if checker is not None else []


@cache
def timezones() -> frozenset[str]:
    """The timezones the contract accepts for a profile."""
    schema = load_spec()["components"]["schemas"]["version_profiles_body"]
    return frozenset(schema["properties"]["timezone"]["enum"])
