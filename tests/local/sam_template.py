"""Per-function settings read from the SAM template, as the deployed stack would get them.

Without parameters only literal environment variables are read. With a deployment
(`Deployment`: parameter values, pseudo parameters, the physical names of resources)
the variables' intrinsics are resolved as CloudFormation resolves them (Ref, Fn::If,
Fn::Sub, Fn::Join, Fn::Split, Fn::Select and the condition functions), parameters checked against their
AllowedPattern and AllowedValues first, as CloudFormation refuses a bad value."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re

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


class TemplateError(ValueError):
    """A deployment CloudFormation would refuse (a bad or missing parameter value)."""


@dataclass(frozen=True)
class Deployment:
    """What a deployed stack resolves intrinsics with."""

    parameters: dict[str, str]
    pseudo: dict[str, str]
    resources: dict[str, str]  # logical id -> physical name (what Ref answers)
    attributes: dict[str, str] = field(default_factory=dict)  # "Logical.Attr" -> value


def parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """Every parameter's value: given, else its Default; checked as CloudFormation does."""
    declared = _mapping(template.get("Parameters"))
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(f"Parameters: {unknown} do not exist in the template")
    values = {}
    for name, spec in declared.items():
        spec = _mapping(spec)
        if name in given:
            value = str(given[name])
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise TemplateError(f"Parameters: [{name}] must have values")
        pattern = spec.get("AllowedPattern")
        if isinstance(pattern, str) and spec.get("Type") == "String" and not re.fullmatch(pattern, value):
            raise TemplateError(f"Parameter '{name}' must match pattern {pattern}")
        allowed = spec.get("AllowedValues")
        if isinstance(allowed, list) and value not in [str(a) for a in allowed]:
            raise TemplateError(f"Parameter '{name}' must be one of AllowedValues")
        values[name] = value
    return values


def resolve(value: Any, template: dict[str, Any], deployment: Deployment) -> Any:
    """`value` with its intrinsics resolved as CloudFormation would (TemplateError when one
    names something the deployment does not have)."""
    return _resolve(value, template, deployment)


# What Ref AWS::NoValue resolves to: removed from the list or mapping that holds it.
_NO_VALUE = object()


def _resolve(value: Any, template: dict[str, Any], deployment: Deployment) -> Any:
    if isinstance(value, Intrinsic):
        name = value.tag[1:]
        return _resolve({f"Fn::{name}" if name != "Ref" else "Ref": value.value}, template, deployment)
    if isinstance(value, list):
        return [r for v in value if (r := _resolve(v, template, deployment)) is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: r for k, v in value.items() if (r := _resolve(v, template, deployment)) is not _NO_VALUE}
    (key, arg), = value.items()
    if key == "Ref" and arg == "AWS::NoValue":
        return _NO_VALUE
    if key == "Ref":
        declared = _mapping(_mapping(template.get("Parameters")).get(arg))
        if declared.get("Type") == "CommaDelimitedList" and arg in deployment.parameters:
            # CloudFormation's Ref of a CommaDelimitedList is a list ("" is [""]).
            return [item.strip() for item in deployment.parameters[arg].split(",")]
        for source in (deployment.parameters, deployment.pseudo, deployment.resources):
            if arg in source:
                return source[arg]
        raise TemplateError(f"Ref {arg}: unknown")
    if key == "Fn::GetAtt":
        name = arg if isinstance(arg, str) else ".".join(arg)
        if name in deployment.attributes:
            return deployment.attributes[name]
        raise TemplateError(f"Fn::GetAtt {name}: unknown")
    if key == "Fn::If":
        condition, yes, no = arg
        return _resolve(yes if _condition(condition, template, deployment) else no, template, deployment)
    if key == "Fn::Sub":
        text = arg if isinstance(arg, str) else arg[0]
        variables = {} if isinstance(arg, str) else {
            name: str(_resolve(v, template, deployment)) for name, v in _mapping(arg[1]).items()}

        def lookup(match: re.Match) -> str:
            name = match.group(1)
            for source in (variables, deployment.parameters, deployment.pseudo, deployment.resources,
                           deployment.attributes):
                if name in source:
                    return source[name]
            raise TemplateError(f"Fn::Sub ${{{name}}}: unknown")

        # ${!Literal} is the literal ${Literal}.
        return re.sub(r"\$\{!([^}]*)\}", r"${\1}", re.sub(r"\$\{([A-Za-z0-9:.]+)\}", lookup, text))
    if key == "Fn::Join":
        separator, items = arg
        return separator.join(str(i) for i in _resolve(items, template, deployment))
    if key == "Fn::Split":
        separator, text = arg
        return str(_resolve(text, template, deployment)).split(separator)
    if key == "Fn::Select":
        index, items = arg
        return _resolve(items, template, deployment)[int(_resolve(index, template, deployment))]
    if key in ("Fn::Equals", "Fn::Not", "Fn::Or", "Fn::And", "Condition"):
        return _condition(value, template, deployment)
    return {key: _resolve(arg, template, deployment)}


def _condition(value: Any, template: dict[str, Any], deployment: Deployment) -> bool:
    if isinstance(value, str):  # a condition's name
        return _condition(_mapping(template.get("Conditions"))[value], template, deployment)
    if isinstance(value, Intrinsic):
        return _condition({f"Fn::{value.tag[1:]}" if value.tag != "!Condition" else "Condition": value.value},
                          template, deployment)
    (key, arg), = value.items()
    if key == "Condition":
        return _condition(arg, template, deployment)
    if key == "Fn::Equals":
        left, right = (_resolve(a, template, deployment) for a in arg)
        return str(left) == str(right)
    if key == "Fn::Not":
        return not _condition(arg[0], template, deployment)
    if key == "Fn::Or":
        return any(_condition(a, template, deployment) for a in arg)
    if key == "Fn::And":
        return all(_condition(a, template, deployment) for a in arg)
    raise TemplateError(f"unsupported condition {key}")


def resources_of(
    template: dict[str, Any], resource_type: str, deployment: Deployment
) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, resource) of every resource of `resource_type` whose Condition
    holds, in the template's order; `resolve` its properties as needed."""
    found = []
    for logical_id, resource in _mapping(template.get("Resources")).items():
        resource = _mapping(resource)
        if resource.get("Type") != resource_type:
            continue
        condition = resource.get("Condition")
        if condition is not None and not _condition(condition, template, deployment):
            continue
        found.append((logical_id, resource))
    return found


def function_settings(
    template: dict[str, Any], deployment: Deployment | None = None
) -> dict[str, FunctionSettings]:
    """Settings of every AWS::Serverless::Function, keyed by the binary it runs: the
    cargo-lambda `Metadata.BuildProperties.Binary`, or else the basename of `CodeUri`.
    With a `deployment`, environment intrinsics are resolved and a function whose
    Condition is false is left out (`excluded_functions`); without, skipped and kept."""
    globals_ = _mapping(_mapping(template.get("Globals")).get("Function"))
    settings = {}
    excluded = set() if deployment is None else excluded_functions(template, deployment)
    for resource in _mapping(template.get("Resources")).values():
        resource = _mapping(resource)
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if _binary_name(resource, _mapping(resource.get("Properties"))) in excluded:
            continue
        properties = _mapping(resource.get("Properties"))
        name = _binary_name(resource, properties)
        if name is None:
            continue
        timeout = _number(properties.get("Timeout"), _number(globals_.get("Timeout"), None))
        memory = _number(properties.get("MemorySize"), _number(globals_.get("MemorySize"), None))
        # SAM merges Globals' variables with the function's own, the function's winning.
        env = _variables(globals_, template, deployment) | _variables(properties, template, deployment)
        settings[name] = FunctionSettings(
            timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
            memory=DEFAULT_MEMORY_MB if memory is None else int(memory),
            env=env,
        )
    return settings


def excluded_functions(template: dict[str, Any], deployment: Deployment) -> set[str]:
    """The binaries of the AWS::Serverless::Functions a deployment leaves out (Condition false)."""
    kept = {id(resource) for _, resource in resources_of(template, "AWS::Serverless::Function", deployment)}
    return {
        name
        for resource in _mapping(template.get("Resources")).values()
        if _mapping(resource).get("Type") == "AWS::Serverless::Function" and id(resource) not in kept
        and (name := _binary_name(resource, _mapping(resource.get("Properties")))) is not None
    }


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


def _variables(properties: dict[str, Any], template: dict[str, Any], deployment: Deployment | None) -> dict[str, str]:
    variables = _mapping(_mapping(properties.get("Environment")).get("Variables"))
    literal = {}
    for key, value in variables.items():
        if deployment is not None and isinstance(value, (Intrinsic, dict)):
            try:
                value = _resolve(value, template, deployment)
            except (TemplateError, KeyError, TypeError, ValueError):
                continue  # a resource the local stack does not make: left out, as without a deployment
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
