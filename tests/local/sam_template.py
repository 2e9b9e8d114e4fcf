"""Per-function settings read from the SAM template, as the deployed stack would get them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# What AWS Lambda uses when a template sets nothing.
DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128


@dataclass(frozen=True)
class Intrinsic:
    """A CloudFormation short-form intrinsic (!Ref, !Sub, !GetAtt, ...) left unresolved:
    its value only exists once the stack is deployed, so settings built from it are skipped."""

    tag: str
    value: Any


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that accepts CloudFormation's `!Tag` shorthand instead of failing on it."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Intrinsic:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Intrinsic(f"!{suffix}", value)


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True)
class FunctionSettings:
    timeout: float = DEFAULT_TIMEOUT_S
    memory: int = DEFAULT_MEMORY_MB
    env: dict[str, str] = field(default_factory=dict)


def load_template(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_CloudFormationLoader) or {}


def function_settings(template: dict[str, Any]) -> dict[str, FunctionSettings]:
    """Settings of every AWS::Serverless::Function, keyed by the binary it runs: the
    cargo-lambda `Metadata.BuildProperties.Binary`, or else the basename of `CodeUri`."""
    globals_ = _mapping(_mapping(template.get("Globals")).get("Function"))
    settings = {}
    for resource in _mapping(template.get("Resources")).values():
        resource = _mapping(resource)
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = _mapping(resource.get("Properties"))
        name = _binary_name(resource, properties)
        if name is None:
            continue
        timeout = _number(properties.get("Timeout"), _number(globals_.get("Timeout"), None))
        memory = _number(properties.get("MemorySize"), _number(globals_.get("MemorySize"), None))
        # SAM merges Globals' variables with the function's own, the function's winning.
        env = _literal_variables(globals_) | _literal_variables(properties)
        settings[name] = FunctionSettings(
            timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
            memory=DEFAULT_MEMORY_MB if memory is None else int(memory),
            env=env,
        )
    return settings


def _binary_name(resource: dict[str, Any], properties: dict[str, Any]) -> str | None:
    binary = _mapping(_mapping(resource.get("Metadata")).get("BuildProperties")).get("Binary")
    if isinstance(binary, str):
        return binary
    code_uri = properties.get("CodeUri")
    if isinstance(code_uri, str):
        name = Path(code_uri.rstrip("/")).name
        if name not in ("", ".", ".."):
            return name
    return None


def _literal_variables(properties: dict[str, Any]) -> dict[str, str]:
    variables = _mapping(_mapping(properties.get("Environment")).get("Variables"))
    literal = {}
    for key, value in variables.items():
        # CloudFormation passes scalars on as strings, YAML booleans spelt in lower case.
        if isinstance(value, bool):
            literal[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            literal[key] = str(value)
    return literal


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any, fallback: float | None) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return fallback
