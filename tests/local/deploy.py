"""What `sam deploy` does for the local stack: the template's parameters resolved into
every function's environment, and the stack's ConfigBucket and LeaseBucket created.

`POST /understudy/deploy {"parameters": {"StagingAccountId": "", ...}}` on the invoke
host deploys (or redeploys) with those parameter values, the template's defaults for
the others, and answers `{"config_bucket": NAME, "lease_bucket": NAME, "variables": {...}}` (the variables
every function got). A value CloudFormation would refuse (an AllowedPattern or
AllowedValues miss, an unknown parameter) is a 400 naming it, and nothing changes.
The stack deploys the template's defaults when it starts.

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

STACK_NAME = "understudy-local"
CONFIG_BUCKET = "understudy-local-configbucket"
# The run lock's bucket (LeaseBucket): unversioned, as the template declares it.
LEASE_BUCKET = "understudy-local-leasebucket"


class Deployer:
    def __init__(self, template_path: Path, host: lambda_host.InvokeHost, region: str):
        self._template = sam_template.load_template(template_path) if template_path.is_file() else {}
        self._host = host
        self._region = region
        self._lock = threading.Lock()

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
                resources={"ConfigBucket": CONFIG_BUCKET, "LeaseBucket": LEASE_BUCKET},
                attributes={
                    "ConfigBucket.Arn": f"arn:aws:s3:::{CONFIG_BUCKET}",
                    "LeaseBucket.Arn": f"arn:aws:s3:::{LEASE_BUCKET}",
                },
            )
            settings = sam_template.function_settings(self._template, deployment)
            self._create_buckets()
            self._host.redeploy(settings)
            variables = next(iter(settings.values())).env if settings else {}
            return {"config_bucket": CONFIG_BUCKET, "lease_bucket": LEASE_BUCKET, "variables": variables}

    def _create_buckets(self) -> None:
        from moto.s3.models import s3_backends

        s3 = s3_backends[lambda_host.ACCOUNT_ID]["aws"]
        if CONFIG_BUCKET not in s3.buckets:
            s3.create_bucket(CONFIG_BUCKET, self._region)
            s3.put_bucket_versioning(CONFIG_BUCKET, "Enabled")
        if LEASE_BUCKET not in s3.buckets:
            s3.create_bucket(LEASE_BUCKET, self._region)

    def app(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_json(force=True, silent=True)
        parameters = body.get("parameters") if isinstance(body, dict) else None
        if request.method != "POST" or not isinstance(parameters, dict):
            answer, status = {"message": 'POST {"parameters": {"Name": "value", ...}}'}, 400
        else:
            try:
                answer, status = self.deploy({str(k): str(v) for k, v in parameters.items()}), 200
            except sam_template.TemplateError as error:
                answer, status = {"message": str(error)}, 400
        return Response(json.dumps(answer), status, content_type="application/json")(environ, start_response)
