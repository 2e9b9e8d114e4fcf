"""The IAM audit of understudy's two templates (issue #15), run by `make validate`.

The emulator evaluates no policy, so this reads the policies themselves, as deployed:
each template is expanded with samtranslator (so SAM's policy templates, such as
LambdaInvokePolicy, are in it), its intrinsics resolved for one set of parameters
(`sam_template.resolve`), and the stack's managed policies (JSON text under Fn::Sub
where a condition key follows StagingTagKey) parsed. Then every role's statements are
checked:

- names: every action, condition key and resource type must be known to parliament's
  offline copy of AWS's authorization reference, so a misspelled key cannot pass;
- scope: an allowed action that changes something (parliament's access levels Write,
  Tagging and Permissions management) must be conditioned on a resource tag, or every
  resource must be scoped (a named resource, or one of understudy's name patterns),
  unless it is one of the stated EXCEPTIONS, each held narrow by the conditions it names;
- tags: an allowed tagging action must limit the tag keys (ForAllValues on aws:TagKeys),
  so no role can add the tag that unlocks its own permissions;
- trust: a role another account may assume requires an external id and names the
  principals by aws:PrincipalArn, never the whole account.

`python tests/local/iam_audit.py` audits both templates with their defaults and with every
samconfig environment's parameters, prints the stated exceptions and exits 1 on a finding.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sam_template  # noqa: E402
import samconfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STAGING_TEMPLATE = ROOT / "infra/template.yaml"
PRODUCTION_TEMPLATE = ROOT / "infra/production-access.yaml"

# The account and region a template is resolved in when the parameters do not say.
ACCOUNT = "222222222222"
REGION = "eu-west-1"
STACK = "understudy-audit"

# parliament's access levels of actions that change something.
MUTATING = {"Write", "Tagging", "Permissions management"}

# The names understudy gives what it creates (functions/*/src/naming.rs); a resource
# pattern of one of these shapes is scoped to understudy's own resources.
UNDERSTUDY_NAMES = [
    re.compile(pattern)
    for pattern in (
        r"understudy-\*",  # snapshots (snapshot/naming.rs) and their -share copies
        r"\*-new-\?{6}",  # a run's temporary database (restore/naming.rs temporary_identifier)
        r"\*-new-\?{6}-\*",  # its cluster's instances (member_identifier of the temporary)
        r"\*-copy-\?{6}",  # a run's staging copy of a shared snapshot (staging_copy_identifier)
        r"\*-retired-\?{6}-final",  # a retired database's final snapshot
    )
]

# AWS-managed policies a role may carry: what SAM attaches, with the reason.
AWS_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole":
        "SAM's default for every function: its own log streams (logs:CreateLogGroup, CreateLogStream, PutLogEvents)",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess":
        "SAM's when Tracing is Active: X-Ray takes no resource",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole":
        "SAM's for a function with a VpcConfig (the smoke test's, in staging's VPC when SmokeTestSubnetIds is set): "
        "the network-interface calls Lambda places it with, which take no resource",
}


@dataclass(frozen=True)
class Exemption:
    """An allowed change IAM cannot scope by tag or name, and what holds it narrow."""

    name: str
    reason: str
    actions: frozenset[str]
    # Condition keys the statement must constrain (with StringEquals/StringLike/Bool and
    # a value that is not a bare "*"), e.g. kms:ViaService; or exact values to require.
    requires: tuple[str, ...] = ()
    values: tuple[tuple[str, str], ...] = ()
    # Resources it may name unscoped (regular expressions on the resource part of the ARN);
    # None: any resource; (): none, the scope rule holds as for any change.
    resources: tuple[str, ...] | None = None
    # Whether it may tag without limiting aws:TagKeys.
    any_tag_keys: bool = False


EXCEPTIONS: list[Exemption] = [
    Exemption(
        "log delivery",
        "CloudWatch Logs' log-delivery APIs, which a state machine's logging needs, take no resource (Resource \"*\")",
        frozenset({"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
                   "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
                   "logs:DescribeLogGroups"}),
    ),
    Exemption(
        "X-Ray traces",
        "X-Ray's trace and sampling APIs take no resource; granted only when Tracing is Active",
        frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                   "xray:GetSamplingTargets"}),
    ),
    Exemption(
        "migration task roles",
        "a migration task's execution and task roles are the user's, unknown to the stack; passed only to ECS tasks "
        "(iam:PassedToService), and ecs:RunTask itself only for staging-tagged task definitions",
        frozenset({"iam:PassRole"}),
        values=(("iam:PassedToService", "ecs-tasks.amazonaws.com"),),
    ),
    Exemption(
        "scalable targets",
        "a scalable target's ARN is opaque and carries no ECS tag; held to ECS services' desired count, and the "
        "function registers targets only of services it checked carry the staging tag",
        frozenset({"application-autoscaling:RegisterScalableTarget"}),
        values=(("application-autoscaling:service-namespace", "ecs"),
                ("application-autoscaling:scalable-dimension", "ecs:service:DesiredCount")),
    ),
    Exemption(
        "keys through RDS, S3 and EC2",
        "a snapshot's or object's key is production's or staging's and not known to the stack; usable only as RDS, "
        "S3 or EC2 use it (kms:ViaService) for the caller's own account (kms:CallerAccount)",
        frozenset({"kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKey*", "kms:ReEncrypt*",
                   "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKeyWithoutPlaintext"}),
        requires=("kms:ViaService", "kms:CallerAccount"),
    ),
    Exemption(
        "what an RDS create uses",
        "a restore, copy or new instance names the subnet, parameter and option groups it joins, which it uses and "
        "never changes; what it creates is allowed only under understudy's names with the staging tag",
        frozenset({"rds:RestoreDBClusterFromSnapshot", "rds:RestoreDBInstanceFromDBSnapshot", "rds:CreateDBInstance",
                   "rds:CopyDBSnapshot"}),
        resources=(r"subgrp:\*", r"cluster-pg:\*", r"pg:\*", r"og:\*"),
    ),
    Exemption(
        "managed master passwords",
        "RDS creates and tags the secret of a managed master password (config.database.password without a secret) "
        "under its own rds!... name, in the caller's name; the tags are RDS's",
        frozenset({"secretsmanager:CreateSecret", "secretsmanager:TagResource"}),
        resources=(r"secret:rds!\*",),
        any_tag_keys=True,
    ),
    Exemption(
        "mirrored objects' tags",
        "the mirror copies each object's tags as production has them, whatever their keys; only into the configured "
        "targets, and no permission of understudy depends on an object's tag",
        frozenset({"s3:PutObjectTagging"}),
        resources=(),
        any_tag_keys=True,
    ),
]


@dataclass
class Finding:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Role:
    name: str
    trust: dict[str, Any]
    # (where, document): inline policies and the stack's own managed policies.
    policies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    aws_managed: list[str] = field(default_factory=list)

    def statements(self) -> list[dict[str, Any]]:
        return [s for _, doc in self.policies for s in listify(doc.get("Statement"))]


def listify(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# -- expansion and resolution ---------------------------------------------------------


class _ManagedPolicyNames:
    """samtranslator's loader of AWS-managed policy names: the two SAM attaches."""

    def load(self) -> dict[str, str]:
        return {arn.rsplit("/", 1)[1]: arn for arn in AWS_MANAGED}


def expand(path: Path, parameters: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation gets it: SAM's transform applied (code locations
    replaced by placeholders, as `sam deploy` replaces them by S3 objects)."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(path.read_text(encoding="utf-8"))
    if "Transform" not in template:
        return template
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if "CodeUri" in properties:
            properties["CodeUri"] = "s3://understudy-audit/code.zip"
        if "DefinitionUri" in properties:
            properties["DefinitionUri"] = "s3://understudy-audit/definition.asl.json"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # samtranslator's pseudo parameters
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its metrics' "unpublished" warning
    return transform(template, dict(parameters), _ManagedPolicyNames())


def deployment_for(template: dict[str, Any], parameters: dict[str, str], account: str = ACCOUNT,
                   region: str = REGION) -> sam_template.Deployment:
    """Parameter values (checked as CloudFormation checks them), pseudo parameters and a
    plausible physical name and ARN for every resource."""
    values = sam_template.parameter_values(template, parameters)
    pseudo = {"AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": "aws",
              "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": STACK}
    resources: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource.get("Type", "")
        name = f"{STACK}-{logical_id}"
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown"
        arn = f"arn:aws:{service}:{region}:{account}:{logical_id}"
        if kind == "AWS::Lambda::Function":
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
        elif kind == "AWS::StepFunctions::StateMachine":
            arn = name = f"arn:aws:states:{region}:{account}:stateMachine:{name}"
        elif kind == "AWS::S3::Bucket":
            name = name.lower()
            arn = f"arn:aws:s3:::{name}"
        elif kind == "AWS::IAM::ManagedPolicy":
            arn = name = f"arn:aws:iam::{account}:policy/{name}"
        elif kind == "AWS::IAM::Role":
            path = resource.get("Properties", {}).get("Path", "/")
            if not isinstance(path, str):  # SAM's RolePath: a parameter's Ref
                path = sam_template.resolve(path, template, sam_template.Deployment(values, pseudo, {}))
            arn = f"arn:aws:iam::{account}:role{path}{name}"
        elif kind == "AWS::SNS::Topic":
            arn = name = f"arn:aws:sns:{region}:{account}:{name}"
        elif kind == "AWS::Logs::LogGroup":
            arn = f"arn:aws:logs:{region}:{account}:log-group:{name}:*"
        elif kind == "AWS::Events::Rule":
            arn = f"arn:aws:events:{region}:{account}:rule/{name}"
        resources[logical_id] = name
        attributes[f"{logical_id}.Arn"] = arn
    return sam_template.Deployment(parameters=values, pseudo=pseudo, resources=resources, attributes=attributes)


def _document(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise sam_template.TemplateError(f"{where}: the policy document is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise sam_template.TemplateError(f"{where}: the policy document is not an object")
    return value


def roles(template: dict[str, Any], deployment: sam_template.Deployment) -> list[Role]:
    """Every role the deployment creates, with its trust policy, its inline policies and
    the stack's managed policies attached to it (resolved)."""
    managed: dict[str, tuple[str, dict[str, Any]]] = {}
    for logical_id, resource in sam_template.resources_of(template, "AWS::IAM::ManagedPolicy", deployment):
        document = sam_template.resolve(resource["Properties"]["PolicyDocument"], template, deployment)
        managed[deployment.resources[logical_id]] = (logical_id, _document(document, logical_id))
    found = []
    for logical_id, resource in sam_template.resources_of(template, "AWS::IAM::Role", deployment):
        properties = sam_template.resolve(copy.deepcopy(resource.get("Properties", {})), template, deployment)
        role = Role(logical_id, _document(properties.get("AssumeRolePolicyDocument"), logical_id))
        for policy in listify(properties.get("Policies")):
            where = f"{logical_id}/{policy.get('PolicyName', '?')}"
            role.policies.append((where, _document(policy.get("PolicyDocument"), where)))
        for arn in listify(properties.get("ManagedPolicyArns")):
            if arn in managed:
                role.policies.append(managed[arn])
            else:
                role.aws_managed.append(arn)
        found.append(role)
    return found


def stack_roles(path: Path, parameters: dict[str, str], account: str = ACCOUNT,
                region: str = REGION) -> list[Role]:
    expanded = expand(path, parameters)
    return roles(expanded, deployment_for(expanded, parameters, account, region))


# -- the checks -------------------------------------------------------------------------


def _parliament_findings(where: str, statement: dict[str, Any]) -> list[Finding]:
    import parliament

    document = {"Version": "2012-10-17", "Statement": [statement]}
    policy = parliament.analyze_policy_string(json.dumps(document), include_community_auditors=False)
    findings = []
    for finding in policy.findings:
        if finding.issue in NAME_ISSUES:
            findings.append(Finding(where, f"parliament {finding.issue}: {finding.detail}"))
    return findings


# parliament's findings that mean a name or a shape AWS would not honour. Its
# RESOURCE_MISMATCH is left out: it wants every resource type of an action in each
# statement, while IAM authorizes each resource of a request on its own, so one statement
# may allow a create's new resource and another what it reads; `audit_resource_types`
# checks instead that each action names at least one resource of its types.
NAME_ISSUES = {
    "UNKNOWN_ACTION", "UNKNOWN_PREFIX", "UNKNOWN_CONDITION_FOR_ACTION", "UNKNOWN_OPERATOR", "MISMATCHED_TYPE",
    "MISMATCHED_TYPE_OPERATION_TO_NULL", "MALFORMED", "MALFORMED_JSON", "INVALID_ARN",
    "BAD_PATTERN_FOR_MFA", "UNKNOWN_FEDERATION_SOURCE", "UNKNOWN_PRINCIPAL",
}


def _access_levels(action: str) -> dict[str, str] | None:
    """{"service:Action": access level} of everything `action` (maybe a wildcard) names;
    None when parliament knows none."""
    import parliament

    try:
        expanded = parliament.expand_action(action)
    except Exception:  # parliament raises its own Unknown*Exception types
        return None
    levels = {}
    for item in expanded:
        info = parliament.statement.get_privilege_info(item["service"], item["action"])
        levels[f"{item['service']}:{item['action']}"] = info["access_level"]
    return levels


def conditions(statement: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(operator, key, values) of a statement's Condition block."""
    found = []
    for operator, entries in (statement.get("Condition") or {}).items():
        for key, values in (entries or {}).items():
            found.append((operator, key, [str(v) for v in listify(values)]))
    return found


def _is_tag_condition(operator: str, key: str, values: list[str], kind: str) -> bool:
    literal = all(v and "*" not in v and "?" not in v for v in values)
    return operator == "StringEquals" and literal and re.fullmatch(rf"[a-z0-9-]+:{kind}/.+", key.lower()) is not None


def _constrains(statement: dict[str, Any], key: str) -> bool:
    return any(k.lower() == key.lower() and operator.split(":")[-1] in ("StringEquals", "StringLike", "Bool", "ArnLike",
                                                                         "ArnEquals")
               and values and all(v.strip("*") for v in values)
               for operator, k, values in conditions(statement))


def _has_value(statement: dict[str, Any], key: str, value: str) -> bool:
    return any(operator == "StringEquals" and k.lower() == key.lower() and values == [value]
               for operator, k, values in conditions(statement))


def _limits_tag_keys(statement: dict[str, Any]) -> bool:
    return any(operator in ("ForAllValues:StringEquals", "ForAllValues:StringLike") and k.lower() == "aws:tagkeys"
               and values and "*" not in values
               for operator, k, values in conditions(statement))


def resource_id(arn: str) -> str | None:
    """The part of an ARN after its resource type (`*-new-*` of `...:cluster:*-new-*`), or
    the whole resource part for S3; None for "*" or a malformed ARN."""
    parts = arn.split(":", 5)
    if arn == "*" or len(parts) < 6:
        return None
    rest = parts[5]
    if parts[2] == "s3":
        return rest
    match = re.match(r"^([A-Za-z0-9-]+)[:/](.*)$", rest)
    return match.group(2) if match else rest


def is_scoped(arn: str) -> bool:
    """A named resource (its id starts with a literal) or one of understudy's name patterns."""
    rid = resource_id(arn)
    if rid is None:
        return False
    if any(p.fullmatch(rid) for p in UNDERSTUDY_NAMES):
        return True
    return rid != "" and not rid.startswith(("*", "?"))


KNOWN_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "StringEqualsIgnoreCase", "ArnLike", "ArnEquals",
    "ArnNotLike", "Bool", "Null", "ForAllValues:StringEquals", "ForAllValues:StringLike", "ForAnyValue:StringEquals",
    "ForAnyValue:StringLike",
}


def audit_statement(where: str, statement: dict[str, Any]) -> list[Finding]:
    """What is wrong with one identity-policy statement (empty: nothing)."""
    sid = statement.get("Sid")
    where = f"{where}/{sid}" if sid else where
    findings = _parliament_findings(where, statement)
    for key in ("NotAction", "NotResource", "NotPrincipal"):
        if key in statement:
            findings.append(Finding(where, f"{key} grants everything it does not name"))
    for operator, key, _ in conditions(statement):
        if operator not in KNOWN_OPERATORS:
            findings.append(Finding(where, f"condition operator {operator} (on {key}) is not one the audit knows"))
    if statement.get("Effect") != "Allow":
        return findings
    levels: dict[str, str] = {}
    for action in listify(statement.get("Action")):
        known = _access_levels(action)
        if known is None:
            findings.append(Finding(where, f"unknown action {action}"))
        else:
            levels.update(known)
    mutating = sorted(a for a, level in levels.items() if level in MUTATING)
    if not mutating:
        return findings
    resources = [str(r) for r in listify(statement.get("Resource"))]
    tag_conditioned = any(_is_tag_condition(op, key, values, "resourcetag") for op, key, values in conditions(statement))
    uncovered = []
    for action in mutating:
        exemption = next((e for e in EXCEPTIONS if _names(e, action)), None)
        if exemption is None:
            uncovered.append(action)
            continue
        missing = [k for k in exemption.requires if not _constrains(statement, k)]
        missing += [f"{k}={v}" for k, v in exemption.values if not _has_value(statement, k, v)]
        if missing:
            findings.append(Finding(where, f"{action}: the exception '{exemption.name}' holds only with a condition on "
                                           f"{', '.join(missing)}"))
        if exemption.resources is not None:
            loose = [r for r in resources if not is_scoped(r)
                     and not any(re.fullmatch(p, r.split(":", 5)[-1]) for p in exemption.resources)]
            if loose:
                uncovered.append(action)
    if uncovered:
        loose = [r for r in resources if not is_scoped(r) and not _exempt_resource(r, uncovered)]
        if loose and not tag_conditioned:
            findings.append(Finding(where, f"{', '.join(uncovered)} on {', '.join(loose)}: a change neither conditioned "
                                           "on a resource tag nor scoped to named or understudy-named resources"))
    tagging = [a for a in mutating if levels[a] == "Tagging"
               and not any(_names(e, a) and e.any_tag_keys for e in EXCEPTIONS)]
    if tagging and not _limits_tag_keys(statement):
        findings.append(Finding(where, f"{', '.join(tagging)} may add any tag key, the one that unlocks its own "
                                       "permissions included: limit aws:TagKeys with ForAllValues"))
    for operator, key, values in conditions(statement):
        if re.fullmatch(r"[a-z0-9-]+:(resourcetag|requesttag)/.+", key.lower()) and any("*" in v or "?" in v
                                                                                           for v in values):
            findings.append(Finding(where, f"{key} {operator} {values}: a wildcard tag value matches any resource"))
    return findings


def _names(exemption: Exemption, action: str) -> bool:
    return any(re.fullmatch(re.escape(a).replace(r"\*", ".*"), action, re.IGNORECASE) for a in exemption.actions)


def _exempt_resource(arn: str, actions: list[str]) -> bool:
    rest = arn.split(":", 5)[-1]
    return any(all(_names(e, a) for a in actions) and e.resources is not None
               and any(re.fullmatch(p, rest) for p in e.resources) for e in EXCEPTIONS)


def audit_trust(role: Role) -> list[Finding]:
    findings = []
    for statement in listify(role.trust.get("Statement")):
        principals = listify((statement.get("Principal") or {}).get("AWS")) if isinstance(
            statement.get("Principal"), dict) else listify(statement.get("Principal"))
        if not principals or statement.get("Effect") != "Allow":
            continue
        where = f"{role.name}/trust"
        if not _constrains(statement, "sts:ExternalId"):
            findings.append(Finding(where, "another account may assume it without an external id (sts:ExternalId)"))
        if not any(k.lower() == "aws:principalarn" and op in ("ArnLike", "ArnEquals") and all(
                (resource_id(v) or "").strip("*") for v in values) for op, k, values in conditions(statement)):
            findings.append(Finding(where, "trusts a whole account: name the principals with ArnLike aws:PrincipalArn"))
    return findings


def _resource_formats(action: str) -> list[str]:
    """The ARN formats (wildcards for variables) of the resource types `action` takes."""
    import parliament

    service, name = action.split(":", 1)
    info = parliament.statement.get_privilege_info(service, name)
    formats = []
    for resource_type in info["resource_types"]:
        kind = resource_type["resource_type"].rstrip("*")
        if not kind:
            continue
        for resource in info["service_resources"]:
            if resource["resource"] == kind:
                formats.append(re.sub(r"\$\{.*?\}", "*", resource["arn"]))
    return formats


def audit_resource_types(role: Role) -> list[Finding]:
    """Each allowed action names at least one resource of a type it takes (or "*")."""
    import parliament

    named: dict[str, list[str]] = {}
    for statement in role.statements():
        if statement.get("Effect") != "Allow":
            continue
        for action in listify(statement.get("Action")):
            for expanded in (_access_levels(action) or {}):
                named.setdefault(expanded, []).extend(str(r) for r in listify(statement.get("Resource")))
    findings = []
    for action, resources in sorted(named.items()):
        formats = _resource_formats(action)
        if not formats or "*" in resources:
            continue
        if not any(parliament.is_arn_match("", f, r) for f in formats for r in resources if r != "*"):
            findings.append(Finding(role.name, f"{action} is allowed on {', '.join(sorted(set(resources)))}, none of "
                                               f"which is of a type it takes ({', '.join(formats)})"))
    return findings


def audit_roles(found: Iterable[Role]) -> list[Finding]:
    findings = []
    for role in found:
        findings += audit_trust(role)
        findings += audit_resource_types(role)
        for arn in role.aws_managed:
            if arn not in AWS_MANAGED:
                findings.append(Finding(role.name, f"AWS-managed policy {arn} is not one the audit knows"))
        for where, document in role.policies:
            for statement in listify(document.get("Statement")):
                findings += audit_statement(where, statement)
    return findings


def audited_deployments() -> list[tuple[str, Path, dict[str, str]]]:
    """(label, template, parameters): both templates with their defaults (production-access
    with example values for its required parameters) and every samconfig environment."""
    config = samconfig.load()
    found = [
        ("staging defaults", STAGING_TEMPLATE, {}),
        ("staging, StagingTagKey=Environment", STAGING_TEMPLATE,
         {"StagingTagKey": "Environment", "MirrorBuckets": "prod-media/uploads/=staging-media, prod-files=staging-files"}),
        ("production-access defaults", PRODUCTION_TEMPLATE,
         {"StagingAccountId": ACCOUNT, "ExternalId": "audit-external-id", "DatabaseSource": "production-db"}),
    ]
    for env in samconfig.environments(config):
        found.append((f"samconfig {env}", samconfig.template(env, config), samconfig.parameters(env, config)))
    return found


def main() -> int:
    findings = []
    for label, path, parameters in audited_deployments():
        found = stack_roles(path, parameters)
        problems = audit_roles(found)
        statements = sum(len(r.statements()) for r in found)
        print(f"{label}: {len(found)} roles, {statements} statements, {len(problems)} findings")
        findings += [f"{label}: {p}" for p in problems]
    print("stated exceptions:")
    for exemption in EXCEPTIONS:
        print(f"  - {exemption.name}: {exemption.reason}")
    for arn, reason in AWS_MANAGED.items():
        print(f"  - {arn.rsplit('/', 1)[1]}: {reason}")
    for finding in findings:
        print(f"FINDING {finding}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
