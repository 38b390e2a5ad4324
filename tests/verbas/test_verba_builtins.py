"""Calculator and clock built-ins."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.verbas.base import ArgumentsInvalid, VerbaError
from app.verbas.builtin.calculator import calculator, evaluate
from app.verbas.builtin.clock import clock


@pytest.mark.parametrize(("expr", "value"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2^10", 1024), ("7 // 2", 3), ("7 % 4", 3),
    ("-3 ** 2", -9), ("sqrt(16)", 4.0), ("round(pi, 2)", 3.14), ("max(1, 5, 3)", 5),
    ("10 / 4", 2.5), ("6 × 7", 42), ("factorial(5)", 120), ("log10(1000)", 3.0),
])
def test_calculator_values(expr: str, value: float) -> None:
    assert evaluate(expr) == pytest.approx(value)


@pytest.mark.parametrize(("expr", "message"), [
    ("__import__('os').system('echo hi')", "unsupported element"),
    ("().__class__", "unsupported element"),
    ("open('x')", "unsupported element"),
    ("a + 1", "unsupported element"),
    ("1 / 0", "division by zero"),
    ("2 ** 100000", "exponents above"),
    ("(10 ** 5000) ** 3", "too large"),
    ("1 +", "not a valid arithmetic expression"),
    ("sqrt(-1)", "cannot compute"),
    ("'a' * 3", "unsupported element"),
    ("", "empty"),
])
def test_calculator_refuses(expr: str, message: str) -> None:
    with pytest.raises(VerbaError, match=message):
        evaluate(expr)


def test_calculator_verba_result_and_schema() -> None:
    result = calculator.handler(expression="1.5 * 4")
    assert result.ok and result.summary == "1.5 * 4 = 6" and result.data["value"] == 6.0
    assert calculator.parameters["required"] == ["expression"]
    assert calculator.default_enabled and not calculator.acts_on_world
    with pytest.raises(ArgumentsInvalid, match="expression"):
        calculator.validate({})
    with pytest.raises(ArgumentsInvalid, match="Additional properties"):
        calculator.validate({"expression": "1", "x": 2})
    assert math.isclose(evaluate("sin(pi / 2)"), 1.0)


def test_clock_in_a_zone() -> None:
    result = clock.handler(timezone="Asia/Tokyo")
    now = datetime.now(ZoneInfo("Asia/Tokyo"))
    stamp = datetime.fromisoformat(result.data["iso"])
    assert abs(stamp - now) < timedelta(seconds=5)
    assert result.ok and "(Asia/Tokyo, UTC+0900)" in result.summary
    assert now.strftime("%A") in result.summary


def test_clock_city_utc_and_local() -> None:
    assert clock.handler(timezone="paris").data["zone"] == "Europe/Paris"
    utc = clock.handler(timezone="UTC")
    assert abs(datetime.fromisoformat(utc.data["iso"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert clock.handler().ok and clock.handler(timezone=None).ok


def test_clock_unknown_zone() -> None:
    with pytest.raises(VerbaError, match="unknown time zone 'Mars/Olympus'"):
        clock.handler(timezone="Mars/Olympus")
    assert clock.validate({}) == {"timezone": None}
