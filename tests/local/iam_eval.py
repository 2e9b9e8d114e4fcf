"""A small evaluator of identity-policy statements, for the policy-evaluation tests (#15).

It answers whether a role's statements allow one request: an action on one or more
resources (each with the tags it already carries), with the tags the request adds and
any other condition keys (kms:ViaService, s3:ResourceAccount, ...). As IAM does, each
resource of the request is authorized on its own: some Allow must match it and no Deny.

Action wildcards are expanded with policyuniverse (its copy of AWS's action list) and
resource patterns matched with the standard library's fnmatch (IAM's * and ?, with no
character classes); the condition operators below are
evaluated with AWS's rules for absent keys (ForAllValues holds, ForAnyValue does not).
An operator it does not know makes the statement match nothing: a refusal, never a pass.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from iam_audit import listify


@dataclass
class Request:
    action: str
    # ARN -> the tags that resource carries already ({} for one the request creates).
    resources: dict[str, dict[str, str]]
    # The tags the request adds (aws:RequestTag/..., and their keys as aws:TagKeys).
    tags: dict[str, str] | None = None
    # Tag keys a request removes (aws:TagKeys of an untag request).
    removes: list[str] | None = None
    context: dict[str, str] = field(default_factory=dict)


def _actions(statement: dict[str, Any]) -> set[str]:
    from policyuniverse.expander_minimizer import _expand_wildcard_action

    return set(_expand_wildcard_action(listify(statement.get("Action"))))


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's ARN wildcards: * any run of characters, ? one, case-sensitive."""
    return _like(arn, pattern)


def _context(request: Request, resource_tags: dict[str, str]) -> dict[str, Any]:
    keys: dict[str, Any] = {k.lower(): v for k, v in request.context.items()}
    for key, value in resource_tags.items():
        keys[f"aws:resourcetag/{key}".lower()] = value
    if request.tags is not None:
        for key, value in request.tags.items():
            keys[f"aws:requesttag/{key}".lower()] = value
        keys["aws:tagkeys"] = list(request.tags)
    if request.removes is not None:
        keys["aws:tagkeys"] = list(request.removes)
    return keys


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _holds(operator: str, key: str, expected: list[str], context: dict[str, Any]) -> bool | None:
    """Whether one condition holds; None for an operator this evaluator does not know."""
    present = key.lower() in context
    actual = context.get(key.lower())
    if operator.startswith(("ForAllValues:", "ForAnyValue:")):
        quantifier, inner = operator.split(":", 1)
        compare = {"StringEquals": lambda v, e: v == e, "StringLike": _like}.get(inner)
        if compare is None:
            return None
        values = listify(actual)
        if quantifier == "ForAllValues":
            return not present or all(any(compare(v, e) for e in expected) for v in values)
        return present and any(compare(v, e) for v in values for e in expected)
    if isinstance(actual, list):
        return None  # a multivalued key under a single-valued operator: not read here
    if operator == "Null":
        return (not present) == (expected[0].lower() == "true")
    if operator in ("StringEquals", "ArnEquals"):
        return present and actual in expected
    if operator in ("StringLike", "ArnLike"):
        return present and any(_like(actual, e) for e in expected)
    if operator == "StringNotEquals":
        return not present or actual not in expected
    if operator == "StringNotLike":
        return not present or not any(_like(actual, e) for e in expected)
    if operator == "Bool":
        return present and str(actual).lower() in [e.lower() for e in expected]
    return None


def statement_matches(statement: dict[str, Any], request: Request, arn: str) -> bool:
    if request.action.lower() not in _actions(statement):
        return False
    if not any(arn_matches(str(p), arn) for p in listify(statement.get("Resource"))):
        return False
    context = _context(request, request.resources[arn])
    for operator, entries in (statement.get("Condition") or {}).items():
        for key, expected in entries.items():
            if _holds(operator, key, [str(e) for e in listify(expected)], context) is not True:
                return False
    return True


def decide(statements: list[dict[str, Any]], request: Request) -> tuple[bool, str]:
    """(allowed, why): allowed when every resource of the request is."""
    for arn in request.resources:
        if any(s.get("Effect") == "Deny" and statement_matches(s, request, arn) for s in statements):
            return False, f"{request.action} on {arn}: denied"
        allowing = [s.get("Sid", "?") for s in statements
                    if s.get("Effect") == "Allow" and statement_matches(s, request, arn)]
        if not allowing:
            return False, f"{request.action} on {arn}: no statement allows it"
    return True, "allowed"
