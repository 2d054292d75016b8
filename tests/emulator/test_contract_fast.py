"""The emulator's fast validators agree with the reference on what conforms.

:class:`django_fyno.emulator.contract.Checker` lets fastjsonschema's compiled
validator say "conforms" and asks openapi-schema-validator only when it does
not. That is safe only if the fast one never accepts what the reference
refuses. Hypothesis builds documents from each schema of the contract (its
requests and replies) and then spoils them: a value of another type, a
missing required key, an unknown key, a value outside an enum, hostile
scalars (NUL, a lone surrogate, 10**400, 1.0 for an integer, booleans for
numbers). Both validators must give the same verdict on every one.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_fyno.emulator import contract

HOSTILE = st.sampled_from(
    [None, True, False, 0, 1, -1, 1.0, 1.5, 10**400, -(10**30), "", "\x00", "\ud800", "x" * 300]
)
ANY_JSON = st.recursive(
    HOSTILE | st.text(max_size=8) | st.integers() | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _scalar(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(max_size=12)
    if kind == "integer":
        return st.integers(-(2**40), 2**40)
    if kind == "number":
        return st.integers(-1000, 1000) | st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return ANY_JSON


def _document(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly conforming documents of ``schema``, each node possibly spoiled."""
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([_document(part, depth) for part in schema[key]])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        extra = schema.get("additionalProperties")

        @st.composite
        def an_object(draw: st.DrawFn) -> dict[str, Any]:
            found = {}
            for name, sub in properties.items():
                if name in required or draw(st.booleans()):
                    found[name] = draw(_document(sub, depth + 1))
            if isinstance(extra, dict) and depth < 4:
                for name in draw(st.lists(st.text(min_size=1, max_size=6), max_size=2)):
                    found[name] = draw(_document(extra, depth + 1))
            return found

        built = an_object()
    elif kind == "array":
        items = schema.get("items", {})
        built = st.lists(_document(items, depth + 1), max_size=3 if depth < 4 else 0)
    else:
        built = _scalar(schema)
    return _spoiled(built)


@st.composite
def _spoil(draw: st.DrawFn, value: Any) -> Any:
    how = draw(st.sampled_from(["other", "drop", "extra", "keep"]))
    if how == "other":
        return draw(ANY_JSON)
    if isinstance(value, dict) and value and how == "drop":
        value = dict(value)
        value.pop(draw(st.sampled_from(sorted(value))))
    elif isinstance(value, dict) and how == "extra":
        value = {**value, draw(st.text(min_size=1, max_size=6)): draw(HOSTILE)}
    return value


def _spoiled(built: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # One node in five is spoiled: most documents are wrong in one or two places.
    return st.one_of(built, built, built, built, built.flatmap(_spoil))


def _checkers() -> list[tuple[str, contract.Checker, dict[str, Any]]]:
    found = []
    for name in sorted(contract.OPERATIONS):
        op = contract.operation(name)
        if op.request_schema is not None:
            found.append((f"{name} request", op.validators["request"], op.request_schema))
        for status, schema in sorted(op.reply_schemas.items()):
            if schema:
                found.append((f"{name} {status}", op.validators[str(status)], schema))
    return found


CHECKERS = _checkers()


@pytest.mark.parametrize(
    ("checker", "schema"), [(c, s) for _, c, s in CHECKERS], ids=[n for n, _, _ in CHECKERS]
)
def test_fast_and_reference_validators_agree(checker: contract.Checker, schema: Any) -> None:
    verdicts = {"agreed": 0}

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(_document(schema))
    def agree(document: Any) -> None:
        reference = not list(checker.reference.iter_errors(document))
        assert checker.conforms(document) == reference, document
        verdicts["agreed"] += 1

    agree()
    assert verdicts["agreed"] >= 25


def test_a_bulk_of_events_takes_the_fast_path() -> None:
    checker = contract.operation("send_bulk").validators["request"]
    body = {
        "event": "welcome",
        "batch": [{"to": {"email": f"u{n}@example.com"}, "data": {"n": n}} for n in range(100)],
    }
    assert checker.conforms(body)
    assert checker.problems(body) == []


def test_a_refused_document_still_gets_the_reference_reasons() -> None:
    checker = contract.operation("send_bulk").validators["request"]
    body = {"event": "welcome", "batch": [{"to": {"email": 5}}]}
    assert not checker.conforms(body)
    assert checker.problems(body) == ["batch/0: matches none of the allowed forms"]
