"""Built-in Verba: safe arithmetic on a parsed AST (never ``eval``)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from app.verbas.base import VerbaError, VerbaResult, verba

MAX_CHARS = 500
MAX_POWER = 10_000
MAX_BITS = 13_300  # about 4000 decimal digits

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos,
                                                          ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "log": math.log, "log10": math.log10,
    "log2": math.log2, "exp": math.exp, "abs": abs, "round": round, "floor": math.floor,
    "ceil": math.ceil, "min": min, "max": max, "radians": math.radians,
    "degrees": math.degrees, "factorial": math.factorial,
}
_CONSTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def evaluate(expression: str) -> int | float:
    """Value of an arithmetic expression; raises VerbaError for anything else."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    text = text.replace("−", "-")
    if not text:
        raise VerbaError("the expression is empty")
    if len(text) > MAX_CHARS:
        raise VerbaError(f"the expression is longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise VerbaError(f"not a valid arithmetic expression: {exc.msg}") from None
    try:
        return _eval(tree.body)
    except ZeroDivisionError:
        raise VerbaError("division by zero") from None
    except (OverflowError, ValueError) as exc:
        raise VerbaError(f"cannot compute that: {exc}") from None


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_POWER:
                raise VerbaError(f"exponents above {MAX_POWER} are not allowed")
            if isinstance(left, int) and isinstance(right, int) and \
                    left.bit_length() * right > MAX_BITS:
                raise VerbaError("the result is too large")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise VerbaError("the result is not a real number")
        if isinstance(result, int) and result.bit_length() > MAX_BITS:
            raise VerbaError("the result is too large")
        return result
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS and not node.keywords):
        args = [_eval(a) for a in node.args]
        if node.func.id == "factorial" and (not args or args[0] > 1000):
            raise VerbaError("factorial is limited to 1000")
        return _FUNCS[node.func.id](*args)
    raise VerbaError(f"unsupported element in the expression: {ast.dump(node)[:60]}")


def format_number(value: int | float) -> str:
    """Plain, readable number text (integers exact, floats to 12 significant digits)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


@verba(id="calculator", name="Calculator",
       description="Evaluates arithmetic exactly: + - * / // % ** (or ^), parentheses, sqrt, "
                   "sin, cos, tan, log, exp, abs, round, floor, ceil, min, max, pi, e.",
       when_to_use="the user asks to compute or convert numbers, percentages or any arithmetic.",
       default_enabled=True)
def calculator(expression: Annotated[str, Field(
        description="The arithmetic expression, e.g. (17.5 * 3) / 4 or sqrt(2)",
        min_length=1, max_length=MAX_CHARS)]) -> VerbaResult:
    """Evaluate an arithmetic expression."""
    value = evaluate(expression)
    text = format_number(value)
    return VerbaResult.success(f"{expression.strip()} = {text}", {"value": value, "text": text})
