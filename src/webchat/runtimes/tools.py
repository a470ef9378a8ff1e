"""Tools a runtime may offer to its engine, and the registry profiles name them from.

A tool takes JSON-like arguments and returns text. Bad input raises :class:`ToolError`, whose message is
safe to show to the user and to hand back to the model as the tool's error result.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class ToolError(Exception):
    """A tool could not run with the given arguments (bad input, unknown tool, result out of range)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]  # a JSON schema object describing the arguments
    func: Callable[[Mapping[str, Any]], str] = field(repr=False)

    def run(self, args: Mapping[str, Any]) -> str:
        if not isinstance(args, Mapping):
            raise ToolError(f"{self.name}: arguments must be an object")
        return self.func(args)

    def spec(self) -> dict[str, Any]:
        """A provider-neutral description: ``{name, description, parameters}``."""
        return {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}


class ToolRegistry:
    """Tools by name. Names are unique; registering a name twice is an error."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def run(self, name: str, args: Mapping[str, Any]) -> str:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolError(f"unknown tool {name!r}")
        return tool.run(args)

    def specs(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """Specs of the named tools, in the given order; unknown names raise :class:`ToolError`."""
        out = []
        for name in names:
            tool = self._tools.get(name)
            if tool is None:
                raise ToolError(f"unknown tool {name!r}")
            out.append(tool.spec())
        return out


# --- calculator --------------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS: Final = 500
MAX_NODES: Final = 200
MAX_EXPONENT: Final = 1000
MAX_INT_BITS: Final = 4096

_BINARY: Final[dict[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: Final[dict[type[ast.unaryop], Callable[[Any], Any]]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}

Number = int | float


def _check(value: Number) -> Number:
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise ToolError("result too large")
        return value
    if not math.isfinite(value):
        raise ToolError("result too large")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent too large (at most {MAX_EXPONENT})")
    # Refuse before computing: an integer result would have about exponent * log2(|base|) bits.
    big_int = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
    if big_int and exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise ToolError("result too large")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero")
    try:
        result = base**exponent
    except OverflowError as exc:
        raise ToolError("result too large") from exc
    if isinstance(result, complex):
        raise ToolError("result is not a real number")
    return result


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolError("only numbers are allowed")
        return _check(value)
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise ToolError("unsupported operator")
        return _check(unary(_eval(node.operand)))
    if isinstance(node, ast.BinOp):
        binary = _BINARY.get(type(node.op))
        if binary is None:
            raise ToolError("unsupported operator")
        left = _eval(node.left)
        right = _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check(_power(left, right))
        try:
            return _check(binary(left, right))
        except ZeroDivisionError as exc:
            raise ToolError("division by zero") from exc
        except OverflowError as exc:
            raise ToolError("result too large") from exc
    if isinstance(node, ast.Name):
        raise ToolError(f"names are not allowed: {node.id}")
    if isinstance(node, ast.Call):
        raise ToolError("function calls are not allowed")
    raise ToolError(f"unsupported syntax: {type(node).__name__}")


def format_number(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".12g")


def evaluate_arithmetic(expression: str) -> str:
    """Evaluate an arithmetic expression safely (``ast``, never ``eval``) and format the result.

    Allowed: int and float literals, ``+ - * / // % **``, unary ``-``/``+`` and parentheses. Exponents and
    integer sizes are bounded so that no expression can exhaust memory or CPU.
    """
    if not isinstance(expression, str):
        raise ToolError("expression must be a string")
    text = expression.strip()
    if not text:
        raise ToolError("expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression too long (at most {MAX_EXPRESSION_CHARS} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ToolError("not a valid arithmetic expression") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError("expression too complex")
    try:
        return format_number(_eval(tree))
    except RecursionError as exc:
        raise ToolError("expression too complex") from exc


def _calculator(args: Mapping[str, Any]) -> str:
    expression = args.get("expression")
    if not isinstance(expression, str):
        raise ToolError("calculator: 'expression' (a string) is required")
    return evaluate_arithmetic(expression)


CALCULATOR: Final = Tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression with numbers, + - * / // % ** and parentheses; returns the result."
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {"type": "string", "description": "The arithmetic expression, e.g. (2 + 3) * 4"}
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    func=_calculator,
)


def default_tool_registry() -> ToolRegistry:
    """The tools this release ships; profiles may name any of them in ``runtime.tools``."""
    return ToolRegistry([CALCULATOR])


_DEFAULT_TOOLS: Final = default_tool_registry()


def get_tool(name: str) -> Tool:
    """A shipped tool by name; raises :class:`ToolError` for an unknown name."""
    tool = _DEFAULT_TOOLS.get(name)
    if tool is None:
        raise ToolError(f"unknown tool {name!r}")
    return tool
