"""Fault injection: latency, errors, throttling and dropped connections.

A :class:`Fault` is set per operation (by its name in ``contract.OPERATIONS``)
or globally (key ``"*"``). When both exist for a request, their latencies add
up and the operation's fault gets the first chance to fail the request.
Random choices come from one seedable generator, so a seeded run repeats.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .contract import OPERATIONS

__all__ = ["GLOBAL", "NO_FAULT", "Decision", "Fault", "Faults"]

GLOBAL = "*"
DROP = "drop"


@dataclass
class Fault:
    """What can go wrong with a request. Rates are probabilities in [0, 1]."""

    latency: float = 0.0  # seconds added to every request
    jitter: float = 0.0  # plus a uniform random 0..jitter seconds
    error_rate: float = 0.0
    error_status: int = 500  # 500, 502, 503, ...
    throttle_rate: float = 0.0  # answer 429 with Retry-After
    retry_after: int = 1  # seconds, for 429
    drop_rate: float = 0.0  # close the connection without an answer
    fail_next: int = 0  # fail the next N requests for certain ...
    fail_next_status: int | str = 503  # ... with this status, or "drop"
    # The request takes effect before the fault answers: the reply is lost,
    # which is how a client ends up sending a duplicate.
    after: bool = False

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Fault:
        """A fault from JSON-like knobs; ValueError names the bad one."""
        if not isinstance(raw, Mapping):
            raise ValueError("a fault must be an object of knobs")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown fault knob(s) {unknown}; known: {sorted(known)}")
        fault = cls(**raw)
        fault.check()
        return fault

    def check(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0")
        for name in ("error_rate", "throttle_rate", "drop_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if not _is_status(self.error_status):
            raise ValueError("error_status must be an HTTP error status (400-599)")
        if not (isinstance(self.retry_after, int) and self.retry_after >= 0):
            raise ValueError("retry_after must be a whole number of seconds >= 0")
        if not (isinstance(self.fail_next, int) and self.fail_next >= 0):
            raise ValueError("fail_next must be a whole number >= 0")
        if self.fail_next_status != DROP and not _is_status(self.fail_next_status):
            raise ValueError("fail_next_status must be an HTTP error status or 'drop'")
        if not isinstance(self.after, bool):
            raise ValueError("after must be true or false")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599


@dataclass(frozen=True)
class Decision:
    """What the faults decided for one request."""

    delay: float = 0.0
    status: int | None = None  # answer this status instead of the real reply
    drop: bool = False  # or drop the connection
    retry_after: int | None = None
    after: bool = False  # apply the request first

    @property
    def faulted(self) -> bool:
        return self.drop or self.status is not None


NO_FAULT = Decision()


def _check_operation(operation: str) -> str:
    if operation != GLOBAL and operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; use '*' or one of {sorted(OPERATIONS)}")
    return operation


class Faults:
    """The faults in force. Not thread-safe: the application locks around it."""

    def __init__(
        self, faults: Mapping[str, Fault | Mapping[str, Any]] | None = None, seed: int | None = None
    ) -> None:
        self._by_operation: dict[str, Fault] = {}
        # Not for secrets: seedable on purpose, so that a test run repeats.
        self.random = random.Random(seed)  # noqa: S311
        self.seed = seed
        if faults:
            self.update(faults)

    def set(self, operation: str | None, fault: Fault | Mapping[str, Any]) -> Fault:
        """Put ``fault`` in force for ``operation`` (None or "*": every request)."""
        key = _check_operation(operation or GLOBAL)
        if not isinstance(fault, Fault):
            fault = Fault.from_mapping(fault)
        else:
            fault.check()
        self._by_operation[key] = fault
        return fault

    def update(self, faults: Mapping[str, Fault | Mapping[str, Any]]) -> None:
        """Set several faults at once; nothing changes if one is invalid."""
        parsed = {
            _check_operation(key): value if isinstance(value, Fault) else Fault.from_mapping(value)
            for key, value in faults.items()
        }
        for fault in parsed.values():
            fault.check()
        self._by_operation.update(parsed)

    def clear(self, operation: str | None = None) -> None:
        """Remove one operation's fault, or all of them (operation None)."""
        if operation is None:
            self._by_operation.clear()
        else:
            self._by_operation.pop(_check_operation(operation), None)

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self.random.seed(seed)

    def get(self, operation: str | None = None) -> Fault | None:
        return self._by_operation.get(operation or GLOBAL)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "faults": {key: fault.as_dict() for key, fault in self._by_operation.items()},
        }

    def decide(self, operation: str | None) -> Decision:
        """The fate of one request to ``operation`` (None: an unknown route)."""
        if not self._by_operation:
            return NO_FAULT  # the hot path: no faults configured
        specs = [
            spec
            for spec in (
                self._by_operation.get(operation) if operation else None,
                self._by_operation.get(GLOBAL),
            )
            if spec is not None
        ]
        if not specs:
            return NO_FAULT
        rng = self.random
        delay = 0.0
        for spec in specs:
            delay += spec.latency + (rng.uniform(0, spec.jitter) if spec.jitter else 0.0)
        for spec in specs:
            if spec.fail_next > 0:
                spec.fail_next -= 1
                if spec.fail_next_status == DROP:
                    return Decision(delay, drop=True, after=spec.after)
                status = int(spec.fail_next_status)
                retry = spec.retry_after if status == 429 else None
                return Decision(delay, status=status, retry_after=retry, after=spec.after)
            if spec.drop_rate and rng.random() < spec.drop_rate:
                return Decision(delay, drop=True, after=spec.after)
            if spec.throttle_rate and rng.random() < spec.throttle_rate:
                return Decision(delay, status=429, retry_after=spec.retry_after, after=spec.after)
            if spec.error_rate and rng.random() < spec.error_rate:
                return Decision(delay, status=spec.error_status, after=spec.after)
        return Decision(delay)
