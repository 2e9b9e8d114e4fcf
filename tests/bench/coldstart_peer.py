"""`make bench-coldstart`'s peer: a Python + boto3 Lambda handler that builds, at import,
the AWS clients understudy's functions build, the way the Python schedulers do
(AWS Instance Scheduler, diodonfrost's terraform-aws-lambda-scheduler-stop-start,
rds-snapshot-tool: `boto3.client(service, config=...)` per service, once per cold start).

The clients are those of UNDERSTUDY_BENCH_PEER_CLIENTS (comma-separated boto3 service
names), default every service the suite's functions use (ALL_CLIENTS). The handler
answers the benchmark's first event as the functions do: a request whose execution
input names a trust setting is refused with InvalidInput before any AWS call.

Run by tests/bench/coldstart_bootstrap.py (the runtime loop), with _HANDLER
`coldstart_peer.handler` and LAMBDA_TASK_ROOT this directory.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

# What understudy's functions build between them (see their Cargo.toml): aws-sdk-rds,
# -s3, -sts, -sfn, -ecs, -ec2, -autoscaling, -applicationautoscaling,
# -resourcegroupstagging, -cloudwatch, -kms, -secretsmanager, by boto3's names.
ALL_CLIENTS = (
    "rds", "s3", "sts", "stepfunctions", "ecs", "ec2", "autoscaling",
    "application-autoscaling", "resourcegroupstaggingapi", "cloudwatch", "kms", "secretsmanager",
)
# The execution input's fields only the deployed stack may set (understudy_shared::deployment).
TRUST_SETTINGS = ("environment", "production", "staging", "tag")

CLIENT_NAMES = tuple(
    name for name in (os.environ.get("UNDERSTUDY_BENCH_PEER_CLIENTS") or ",".join(ALL_CLIENTS)).split(",") if name
)
# Standard retries, as Instance Scheduler's get_client_with_standard_retry configures them.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
CLIENTS = {name: boto3.client(name, config=_CONFIG) for name in CLIENT_NAMES}


class InvalidInput(Exception):
    """The request is refused as it stands (errorType InvalidInput, as the functions answer)."""


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("action"), str):
        raise InvalidInput("invalid input: the request needs an `action`")
    config = event.get("config") or {}
    run_input = config.get("input") or {}
    if not isinstance(run_input, dict):
        raise InvalidInput("invalid input at `config.input`: the execution input must be a JSON object")
    for name in TRUST_SETTINGS:
        if name in run_input:
            raise InvalidInput(
                f"invalid input at `config.input.{name}`: a trust setting, fixed by the deployed stack; "
                "no configuration document or execution input can change it"
            )
    return {"action": event["action"], "clients": sorted(CLIENTS)}
