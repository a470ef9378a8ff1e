"""YAML and JSON (de)serialisation of turns, compatible with the reference implementation's stores.

YAML is read with YAML 1.2 core-schema semantics: only ``true``/``false`` are booleans, only
``null``/``~``/empty are null, and ``yes``, ``no``, ``on``, ``off`` and dates stay strings (PyYAML's
default is YAML 1.1, which would turn them into booleans and datetimes). YAML is written so that both
a 1.1 and a 1.2 reader get the same values back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import yaml

from webchat.turns.model import Block, Turn

_LoaderBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DumperBase: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class Yaml12Loader(_LoaderBase):
    """A safe loader with the YAML 1.2 core schema's implicit typing."""

    yaml_implicit_resolvers: ClassVar[dict[str | None, list[tuple[str, re.Pattern[str]]]]] = {}


Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL_RE, ["~", "n", "N", ""])
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_bool(loader: Any, node: yaml.ScalarNode) -> bool:
    return bool(loader.construct_scalar(node).lower() == "true")


def _construct_timestamp_as_string(loader: Any, node: yaml.ScalarNode) -> str:
    # An explicit !!timestamp tag is kept as its text: turns carry strings, not datetimes.
    return str(loader.construct_scalar(node))


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
Yaml12Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_string)


class SafeYamlDumper(_DumperBase):
    """A safe dumper that also quotes strings a YAML 1.2 reader would take for numbers."""


SafeYamlDumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^0o[0-7]+$"), ["0"])


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


def dump_yaml(value: Any) -> str:
    return str(
        yaml.dump(
            value,
            Dumper=SafeYamlDumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=1 << 30,
        )
    )


class TurnFormatError(ValueError):
    """A document that is not a turn."""


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    raise TurnFormatError(f"{what} must be a mapping, got {type(value).__name__}")


def block_from_dict(doc: Any, index: int = 0) -> Block:
    if not isinstance(doc, Mapping):
        raise TurnFormatError(f"block {index} must be a mapping, got {type(doc).__name__}")
    kind = doc.get("kind")
    if kind is None or kind == "":
        kind = "other"
    return Block(
        id="" if doc.get("id") is None else str(doc.get("id")),
        kind=str(kind),
        role="" if doc.get("role") is None else str(doc.get("role")),
        payload=_mapping(doc.get("payload"), f"block {index} payload"),
        metadata=_mapping(doc.get("metadata"), f"block {index} metadata"),
    )


def turn_from_dict(doc: Any) -> Turn:
    if not isinstance(doc, Mapping):
        raise TurnFormatError(f"a turn must be a mapping, got {type(doc).__name__}")
    blocks_doc = doc.get("blocks") or []
    if not isinstance(blocks_doc, list):
        raise TurnFormatError("turn blocks must be a list")
    return Turn(
        id="" if doc.get("id") is None else str(doc.get("id")),
        blocks=[block_from_dict(b, i) for i, b in enumerate(blocks_doc)],
        metadata=_mapping(doc.get("metadata"), "turn metadata"),
        data=_mapping(doc.get("data"), "turn data"),
    )


def turn_to_yaml(turn: Turn) -> str:
    return dump_yaml(turn.to_dict())


def turn_from_yaml(text: str) -> Turn:
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise TurnFormatError(f"invalid YAML: {exc}") from exc
    return turn_from_dict(doc)


def turn_to_json(turn: Turn) -> str:
    return json.dumps(turn.to_dict(), ensure_ascii=False, separators=(",", ":"))


def turn_from_json(text: str) -> Turn:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TurnFormatError(f"invalid JSON: {exc}") from exc
    return turn_from_dict(doc)
