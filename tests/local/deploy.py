"""What `sam deploy` does for the local stack: the template's parameters resolved into
every function's environment, the stack's ConfigBucket and LeaseBucket created, and its
EventBridge rules (AWS::Events::Rule) put on their buses with resolved patterns and targets.

`POST /understudy/deploy {"parameters": {"StagingAccountId": "", ...}}` on the invoke
host deploys (or redeploys) with those parameter values, the template's defaults for
the others; `{"config_env": "sleep-only"}` deploys that samconfig.toml environment's
overrides (samconfig.py), with any `parameters` on top. It answers `{"config_bucket",
"lease_bucket", "alarm_topic", "state_machines": {stem: ARN}, "rules": [{"rule", "bus",
"pattern", "targets"}], "functions": [...], "variables": {...}}` (the functions whose
Condition holds, and the variables every function got; a function left out answers
ResourceNotFoundException). A value CloudFormation would refuse (an AllowedPattern or
AllowedValues miss, an unknown parameter) is a 400 naming it, and nothing changes.
The stack deploys the template's defaults when it starts.

Rules are created as CloudFormation would create them, the previous deployment's removed
first; a rule whose Condition is false is not created. Ref of a function is its name on the
invoke host, its Arn attribute the Lambda ARN (events_fidelity.py delivers to it); Ref of a
state machine is the ARN of `understudy-local-<definition stem>`, the name a test creates it
under; AlarmTopic is an SNS topic made here.

ConfigBucket is a versioned bucket in the stack's account, as the template declares
it; the configuration document is written into it as an operator would
(`aws s3 cp config.json s3://$BUCKET/config.json`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response

import lambda_host
import sam_template
import samconfig

STACK_NAME = "understudy-local"
CONFIG_BUCKET = "understudy-local-configbucket"
# The run lock's bucket (LeaseBucket): unversioned, as the template declares it.
LEASE_BUCKET = "understudy-local-leasebucket"
# The alarm topic (AlarmTopic).
ALARM_TOPIC = "understudy-local-alarms"
# A state machine's name: the prefix and its definition's file stem (understudy-local-refresh).
STATE_MACHINE_PREFIX = f"{STACK_NAME}-"


class Deployer:
    def __init__(self, template_path: Path, host: lambda_host.InvokeHost, region: str):
        self._template = sam_template.load_template(template_path) if template_path.is_file() else {}
        self._host = host
        self._region = region
        self._lock = threading.Lock()
        self._rules: list[tuple[str, str]] = []  # (name, bus) of the rules deployed
        self._physical = self._physical_names()

    def deploy(self, parameters: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            values = sam_template.parameter_values(self._template, parameters)
            deployment = sam_template.Deployment(
                parameters=values,
                pseudo={
                    "AWS::AccountId": lambda_host.ACCOUNT_ID,
                    "AWS::Region": self._region,
                    "AWS::Partition": "aws",
                    "AWS::URLSuffix": "amazonaws.com",
                    "AWS::StackName": STACK_NAME,
                },
                resources={"ConfigBucket": CONFIG_BUCKET, "LeaseBucket": LEASE_BUCKET, **self._physical},
                attributes={
                    "ConfigBucket.Arn": f"arn:aws:s3:::{CONFIG_BUCKET}",
                    "LeaseBucket.Arn": f"arn:aws:s3:::{LEASE_BUCKET}",
                    **self._attributes,
                },
            )
            settings = sam_template.function_settings(self._template, deployment)
            self._create_buckets()
            self._host.redeploy(settings, sam_template.excluded_functions(self._template, deployment))
            rules = self._deploy_rules(deployment)
            variables = next(iter(settings.values())).env if settings else {}
            return {
                "config_bucket": CONFIG_BUCKET,
                "lease_bucket": LEASE_BUCKET,
                "alarm_topic": self._physical.get("AlarmTopic"),
                "state_machines": self._state_machines(deployment),
                "rules": rules,
                "functions": sorted(settings),
                "variables": variables,
            }

    @property
    def _arn_prefix(self) -> str:
        return f"{self._region}:{lambda_host.ACCOUNT_ID}"

    def _state_machines(self, deployment: sam_template.Deployment) -> dict[str, str]:
        """Each deployed state machine's ARN (its Condition holds) by its definition's stem
        (`refresh`: the ARN of `understudy-local-refresh`, the name a test creates it under)."""
        deployed = sam_template.resources_of(self._template, "AWS::Serverless::StateMachine", deployment)
        return {
            arn.rsplit(":", 1)[1].removeprefix(STATE_MACHINE_PREFIX): arn
            for arn in (self._physical[logical_id] for logical_id, _ in deployed)
        }

    def _physical_names(self) -> dict[str, str]:
        """What Ref answers for the resources the rules name: functions (their names, the
        invoke host's), state machines (ARNs), the alarm topic (its ARN)."""
        physical = {"AlarmTopic": f"arn:aws:sns:{self._arn_prefix}:{ALARM_TOPIC}"}
        for logical_id, resource in (self._template.get("Resources") or {}).items():
            kind = resource.get("Type")
            if kind == "AWS::Serverless::Function":
                binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
                if binary:
                    physical[logical_id] = binary
            elif kind == "AWS::Serverless::StateMachine":
                stem = Path(str(resource["Properties"]["DefinitionUri"])).name.removesuffix(".asl.json")
                physical[logical_id] = f"arn:aws:states:{self._arn_prefix}:stateMachine:{STATE_MACHINE_PREFIX}{stem}"
        return physical

    @property
    def _attributes(self) -> dict[str, str]:
        return {
            f"{logical_id}.Arn": f"arn:aws:lambda:{self._arn_prefix}:function:{name}"
            for logical_id, name in self._physical.items()
            if not name.startswith("arn:")
        }

    def _create_buckets(self) -> None:
        from moto.s3.models import s3_backends

        s3 = s3_backends[lambda_host.ACCOUNT_ID]["aws"]
        if CONFIG_BUCKET not in s3.buckets:
            s3.create_bucket(CONFIG_BUCKET, self._region)
            s3.put_bucket_versioning(CONFIG_BUCKET, "Enabled")
        if LEASE_BUCKET not in s3.buckets:
            s3.create_bucket(LEASE_BUCKET, self._region)

    def _deploy_rules(self, deployment: sam_template.Deployment) -> list[dict[str, Any]]:
        """The template's AWS::Events::Rule resources whose condition holds, created in the
        stack's account with their resolved patterns and targets, as CloudFormation would
        (the previous deployment's rules removed first). Only the targets the local stack
        delivers are put: Lambda functions and SNS topics (events_fidelity.py) and SQS
        queues; a state-machine target is left out (moto's PutEvents fails once one exists)."""
        from moto.events.models import events_backends
        from moto.sns.models import sns_backends

        events = events_backends[lambda_host.ACCOUNT_ID][self._region]
        for name, bus in self._rules:
            rule = events.event_buses[bus].rules.get(name) if bus in events.event_buses else None
            if rule is not None:
                events.remove_targets(name, bus, [t["Id"] for t in rule.targets])
                events.delete_rule(name, bus)
        self._rules = []
        sns_backends[lambda_host.ACCOUNT_ID][self._region].create_topic(ALARM_TOPIC)

        def resolved(value: Any) -> Any:
            return sam_template.resolve(value, self._template, deployment)

        created = []
        for logical_id, resource in sam_template.resources_of(self._template, "AWS::Events::Rule", deployment):
            properties = resource.get("Properties") or {}
            targets = []
            for target in properties.get("Targets") or []:
                arn = resolved(target["Arn"])
                if arn.split(":")[2] not in ("lambda", "sns", "sqs"):
                    continue
                targets.append({"Id": target["Id"], "Arn": arn}
                               | {k: resolved(target[k]) for k in ("Input", "InputPath") if k in target})
            if not targets:
                continue
            bus = resolved(properties.get("EventBusName", "default"))
            if bus not in events.event_buses:
                events.create_event_bus(bus)
            pattern = resolved(properties["EventPattern"])
            events.put_rule(logical_id, description=properties.get("Description"), event_bus_arn=bus,
                            event_pattern=json.dumps(pattern), state=properties.get("State", "ENABLED"))
            events.put_targets(logical_id, bus, targets)
            self._rules.append((logical_id, bus))
            created.append({"rule": logical_id, "bus": bus, "pattern": pattern,
                            "targets": [t["Arn"] for t in targets]})
        return created

    def app(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_json(force=True, silent=True)
        body = body if isinstance(body, dict) else {}
        parameters, config_env = body.get("parameters", {}), body.get("config_env")
        if request.method != "POST" or not isinstance(parameters, dict) or not (
                "parameters" in body or isinstance(config_env, str)):
            answer, status = {"message": 'POST {"parameters": {"Name": "value", ...}} or {"config_env": "<name>"}'}, 400
        else:
            try:
                # A samconfig.toml environment's overrides, as `sam deploy --config-env` reads them.
                given = samconfig.parameters(config_env) if isinstance(config_env, str) else {}
                given |= {str(k): str(v) for k, v in parameters.items()}
                answer, status = self.deploy(given), 200
            except (sam_template.TemplateError, samconfig.SamConfigError) as error:
                answer, status = {"message": str(error)}, 400
        return Response(json.dumps(answer), status, content_type="application/json")(environ, start_response)
