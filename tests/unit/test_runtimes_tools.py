"""The calculator tool and the tool registry."""

from __future__ import annotations

import pytest

from webchat.runtimes.tools import (
    CALCULATOR,
    Tool,
    ToolError,
    ToolRegistry,
    default_tool_registry,
    evaluate_arithmetic,
    get_tool,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", "3"),
        ("17 * 23", "391"),
        ("(2 + 3) * 4", "20"),
        ("-3 * -4", "12"),
        ("+5 - 7", "-2"),
        ("7 / 2", "3.5"),
        ("8 / 2", "4"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ** -2", "0.25"),
        ("1 / 3", "0.333333333333"),
        ("0.1 + 0.2", "0.3"),
        ("2 ** 100", str(2**100)),
        ("1.5e3 * 2", "3000"),
    ],
)
def test_calculator_valid(expression: str, expected: str) -> None:
    assert evaluate_arithmetic(expression) == expected
    assert CALCULATOR.run({"expression": expression}) == expected


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("1 / 0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("x + 1", "names are not allowed"),
        ("__import__('os').system('true')", "not allowed"),
        ("abs(-1)", "function calls are not allowed"),
        ("(1).__class__", "unsupported syntax"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("2 ** 10000", "exponent too large"),
        ("99 ** 999", "result too large"),
        ("10.0 ** 400", "result too large"),
        ("1e308 * 10", "result too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 << 4", "unsupported operator"),
        ("~1", "unsupported operator"),
        ("1 +", "not a valid arithmetic expression"),
        ("", "empty"),
        ("1+" * 300 + "1", "too long"),
        ("[1, 2]", "unsupported syntax"),
        ("1 if 1 else 2", "unsupported syntax"),
    ],
)
def test_calculator_rejects(expression: str, needle: str) -> None:
    with pytest.raises(ToolError, match=needle):
        evaluate_arithmetic(expression)


# How quickly they are refused is measured by bench/tools.py, not here.
@pytest.mark.parametrize(
    "expression", ["(2 ** 999) ** 999", "99999 ** 999 * 99999 ** 999", "((9**9)**9)**99"]
)
def test_nested_huge_powers_are_refused(expression: str) -> None:
    with pytest.raises(ToolError, match="result too large"):
        evaluate_arithmetic(expression)


def test_calculator_arguments() -> None:
    with pytest.raises(ToolError, match="expression"):
        CALCULATOR.run({})
    with pytest.raises(ToolError, match="expression"):
        CALCULATOR.run({"expression": 3})
    with pytest.raises(ToolError, match="object"):
        CALCULATOR.run("1+1")


def test_registry() -> None:
    reg = default_tool_registry()
    assert "calculator" in reg and reg.names() == ["calculator"]
    assert reg.run("calculator", {"expression": "6*7"}) == "42"
    with pytest.raises(ToolError, match="unknown tool"):
        reg.run("shell", {})
    spec = reg.specs(["calculator"])[0]
    assert spec["name"] == "calculator"
    assert spec["parameters"]["required"] == ["expression"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register(CALCULATOR)
    assert get_tool("calculator") is CALCULATOR
    with pytest.raises(ToolError, match="unknown tool"):
        get_tool("shell")
    custom = ToolRegistry([Tool("echo", "Echo", {"type": "object"}, lambda args: str(args.get("x", "")))])
    assert custom.run("echo", {"x": "hi"}) == "hi"
