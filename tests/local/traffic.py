"""What reaches moto, seen from outside the product: a recorder of every AWS request,
and fault injection that fails chosen calls before moto handles them.

`Interceptor` wraps moto's WSGI app, so it sees every AWS request moto serves: the
functions' (they call moto's port directly) and those of moto's own Step Functions
integrations (they call the invoke host, which hands them to the same app). moto's
own /moto-api is let through unrecorded.

A call is described the way moto will act on it: the account moto resolves from the
access key (`moto.core.responses.BaseResponse.get_current_account`), the service moto
dispatches to, and the operation (Query `Action`, JSON `X-Amz-Target`, the Smithy
RPC v2 CBOR path `/service/<service>/operation/<operation>`, or the REST route from the
service model, as moto's router finds it).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import re
import struct
import threading
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from moto.core.exceptions import ServiceException
from werkzeug.wrappers import Request, Response

log = logging.getLogger("understudy.traffic")

# Recorded as the identifier of a call: the first of these parameters it has. Targets
# before sources: a copy is recorded under the snapshot it creates. A parameter that
# lists resources (a JSON array, or Query members `Name.1`, `Name.2`, ... written
# `Name.{n}` here) counts when it names at least one: the call is recorded under the
# first, and `identifiers` holds them all.
IDENTIFIER_PARAMS = (
    "DBClusterIdentifier", "DBInstanceIdentifier", "DBClusterSnapshotIdentifier", "DBSnapshotIdentifier",
    "TargetDBClusterSnapshotIdentifier", "TargetDBSnapshotIdentifier",
    "SourceDBClusterSnapshotIdentifier", "SourceDBSnapshotIdentifier", "SnapshotIdentifier",
    "ResourceName", "Bucket", "SecretId", "KeyId", "RoleArn",
    # ECS (JSON): UpdateService, CreateService, DescribeServices, Tag/UntagResource, ListServices.
    "service", "serviceName", "services", "resourceArn", "cluster",
    # Auto Scaling (Query): UpdateAutoScalingGroup, CreateOrUpdateTags/DeleteTags, DescribeAutoScalingGroups.
    "AutoScalingGroupName", "Tags.member.{n}.ResourceId", "AutoScalingGroupNames.member.{n}",
    # Application Auto Scaling (JSON): RegisterScalableTarget, DescribeScalableTargets, TagResource.
    "ResourceId", "ResourceIds", "ResourceARN",
    # EC2 (Query): Start/StopInstances, DescribeInstances, CreateTags/DeleteTags.
    "InstanceId.{n}", "ResourceId.{n}",
    "stateMachineArn", "executionArn", "FunctionName", "Name",
)
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Head", "Check", "Lookup")
READ_ONLY_ACTIONS = {("sts", "AssumeRole"), ("sts", "GetCallerIdentity")}
# Status of well-known server-side error codes when a fault names none; other codes
# get the status the service model gives them, else 400.
SERVER_ERROR_STATUS = {
    "InternalFailure": 500, "InternalError": 500, "InternalServerError": 500,
    "InternalServerErrorException": 500, "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503, "SlowDown": 503,
    "RequestLimitExceeded": 503,  # EC2's throttling (its model has no error shapes)
}
# moto's app names where they differ from botocore's service names.
_BOTOCORE_NAMES = {"awslambda": "lambda", "dynamodb_v20111205": "dynamodb"}
_FORM = "application/x-www-form-urlencoded"
_JSON_TYPES = ("application/x-amz-json-1.0", "application/x-amz-json-1.1")
_CBOR = "application/cbor"
# Smithy RPC v2 CBOR (CloudWatch in the current SDKs): the operation is in the path.
_RPC_V2_PATH = re.compile(r"^/service/[^/]+/operation/([^/]+)/?$")


class InjectedFault(ServiceException):
    """The error an injected fault answers with (serialized as moto serializes its own)."""


@dataclass
class Call:
    account: str
    service: str  # botocore's name: rds, s3, stepfunctions, resourcegroupstaggingapi, ...
    action: str | None  # None: the operation could not be told
    identifier: str | None
    names: frozenset[str] = field(default_factory=frozenset)  # every name of the service, lower case
    content_type: str = ""
    identifiers: tuple[str, ...] = ()  # every resource the call names (identifier first)
    rpc_v2_cbor: bool = False

    @property
    def mutating(self) -> bool:
        if self.action is None:
            return True  # what cannot be told counts as a change
        return not (self.action.startswith(READ_ONLY_PREFIXES) or (self.service, self.action) in READ_ONLY_ACTIONS)

    def record(self) -> dict[str, Any]:
        return {
            "account": self.account, "service": self.service, "action": self.action,
            "mutating": self.mutating, "identifier": self.identifier, "identifiers": list(self.identifiers),
        }


def _botocore_name(app_name: str) -> str:
    from moto.core.utils import service_name_from_moto_package_name

    return service_name_from_moto_package_name(_BOTOCORE_NAMES.get(app_name, app_name))


def _signing_name(environ: dict[str, Any]) -> str | None:
    """The service of a SigV4 credential scope (the IAM prefix: states, tagging, ...)."""
    try:
        return environ["HTTP_AUTHORIZATION"].split(",")[0].split()[1].split("/")[3].lower()
    except (KeyError, IndexError):
        return None


def _account(environ: dict[str, Any], params: dict[str, Any]) -> str:
    """The account moto acts in, found as BaseResponse.get_current_account finds it."""
    from moto.core.responses import BaseResponse
    from moto.iam.models import get_account_id_from

    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    access_key = "AKIAEXAMPLE"
    match = BaseResponse.access_key_regex.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        access_key = match.group(1)
    elif params.get("AWSAccessKeyId"):
        access_key = params["AWSAccessKeyId"]
    return get_account_id_from(access_key)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, left in place for moto to read again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def describe_call(environ: dict[str, Any], app_name: str) -> Call:
    service = _botocore_name(app_name)
    content_type = environ.get("CONTENT_TYPE", "")
    params: dict[str, Any] = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    action = None
    if content_type.startswith(_FORM):
        params.update(parse_qsl(_read_body(environ).decode("utf-8", "replace")))
    elif content_type.startswith(_JSON_TYPES):
        try:
            body = json.loads(_read_body(environ) or b"{}")
        except ValueError:
            body = None
        if isinstance(body, dict):
            params.update(body)
    target = environ.get("HTTP_X_AMZ_TARGET")
    rpc_v2 = _RPC_V2_PATH.match(environ.get("PATH_INFO", ""))
    rpc_v2_cbor = rpc_v2 is not None and (
        content_type.startswith(_CBOR) or environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor"
    )
    if target:
        action = target.rsplit(".", 1)[-1]
    elif isinstance(params.get("Action"), str):
        action = params["Action"]
    elif rpc_v2_cbor:
        action = rpc_v2.group(1)  # the CBOR body is not read: no identifier
    else:
        action, uri_params = _rest_operation(environ, service)
        params.update(uri_params)
    identifiers = _identifiers(params)
    names = {service, app_name, _signing_name(environ) or service}
    return Call(_account(environ, params), service, action, identifiers[0] if identifiers else None,
                frozenset(name.lower() for name in names), content_type, identifiers, rpc_v2_cbor)


def _identifiers(params: dict[str, Any]) -> tuple[str, ...]:
    """The resources named by the first of IDENTIFIER_PARAMS the request has."""
    for name in IDENTIFIER_PARAMS:
        if "{n}" in name:
            found = tuple(itertools.takewhile(
                lambda value: isinstance(value, str),
                (params.get(name.format(n=n)) for n in itertools.count(1)),
            ))
        else:
            value = params.get(name)
            if isinstance(value, str):
                found = (value,)
            elif isinstance(value, list):
                found = tuple(item for item in value if isinstance(item, str))
            else:
                found = ()
        if found:
            return found
    return ()


def _rest_operation(environ: dict[str, Any], service: str) -> tuple[str | None, dict[str, Any]]:
    """The operation of a REST request, matched by moto's router on method, path,
    query and headers (the body is not read)."""
    from moto.core.request import Request as MotoRequest
    from moto.core.routing import get_service_router

    try:
        operation, uri_params = get_service_router(service).match(MotoRequest(environ))
    except Exception:  # no model, no route: the operation cannot be told
        return None, {}
    return operation.name, dict(uri_params)


@dataclass
class Fault:
    id: int
    service: str
    action: str
    code: str
    account: str | None = None
    identifier: str | None = None
    skip: int = 0  # matching calls still let through before the first failure
    times: int = 1  # failures left
    status: int | None = None
    message: str | None = None

    def matches(self, call: Call) -> bool:
        return (
            self.service.lower() in call.names
            and call.action is not None
            and self.action.lower() == call.action.lower()
            and self.account in (None, call.account)
            and (self.identifier is None or self.identifier in call.identifiers)
        )

    def response(self, call: Call) -> Response:
        """The fault in the service's own error format, as moto serializes errors."""
        from botocore.model import OperationModel
        from moto.core.request import determine_request_protocol
        from moto.core.serialize import get_serializer_class
        from moto.core.utils import get_service_model

        message = self.message or f"{self.code} (injected by the understudy local stack)"
        status = self.status or SERVER_ERROR_STATUS.get(self.code)
        request_id = str(uuid.uuid4())
        if call.rpc_v2_cbor:  # moto has no serializer for it
            return _rpc_v2_cbor_error(call, self.code, message, status, request_id)
        try:
            model = get_service_model(call.service)
        except Exception:  # not a botocore service: answer in JSON
            body = json.dumps({"__type": self.code, "message": message})
            headers = {"x-amzn-ErrorType": self.code, "x-amzn-RequestId": request_id}
            return Response(body, status or 400, headers, content_type="application/x-amz-json-1.1")
        try:
            operation = model.operation_model(call.action)
        except Exception:
            operation = OperationModel({}, model)
        try:
            protocol = determine_request_protocol(model, call.content_type)
        except NotImplementedError:
            protocol = model.protocol
        serializer = get_serializer_class(model.service_name, protocol)(operation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # codes absent from the model (InternalFailure) are fine
            serialized = serializer.serialize(InjectedFault(self.code, message))
        headers = dict(serialized["headers"]) | {"x-amzn-RequestId": request_id}
        return Response(serialized["body"], status or serialized["status_code"], headers)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rpc_v2_cbor_error(call: Call, code: str, message: str, status: int | None, request_id: str) -> Response:
    """An error as Smithy RPC v2 CBOR answers it: a CBOR map with `__type` and `message`,
    plus `x-amzn-query-error` for a service that keeps its Query error codes (CloudWatch)."""
    from moto.core.utils import get_service_model

    headers = {"smithy-protocol": "rpc-v2-cbor", "x-amzn-RequestId": request_id}
    try:
        model = get_service_model(call.service)
    except Exception:
        model = None
    if status is None and model is not None:
        status = next((shape.metadata.get("error", {}).get("httpStatusCode") for shape in model.error_shapes
                       if code in (shape.name, shape.error_code)), None)
    status = status or 400
    if model is not None and "awsQueryCompatible" in model.metadata:
        headers["x-amzn-query-error"] = f"{code};{'Sender' if status < 500 else 'Receiver'}"
    body = _cbor_map({"__type": code, "message": message})
    return Response(body, status, headers, content_type=_CBOR)


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if length < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, length)
    raise ValueError("too long for CBOR")


def _cbor_map(fields: dict[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949): an RPC v2 CBOR error body."""
    encoded = _cbor_head(5, len(fields))
    for key, value in fields.items():
        for text in (key, value):
            raw = text.encode("utf-8")
            encoded += _cbor_head(3, len(raw)) + raw
    return encoded


class Traffic:
    """The request log and the pending faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def arrived(self, call: Call) -> tuple[dict[str, Any], Fault | None]:
        """Records a call and returns its record and the fault it must fail with, if any.
        Every matching fault counts the call, failed or not."""
        record = call.record() | {"status": None, "injected": None}
        with self._lock:
            self._requests.append(record)
            chosen = None
            for fault in self._faults:
                if not fault.matches(call):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                elif chosen is None:
                    chosen = fault
            if chosen is not None:
                chosen.times -= 1
                if chosen.times == 0:
                    self._faults.remove(chosen)
                record["injected"] = chosen.code
        return record, chosen

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record) for record in self._requests]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        fault = Fault(
            id=0, service=spec["service"], action=spec["action"], code=spec["code"],
            account=spec.get("account"), identifier=spec.get("identifier"),
            skip=spec.get("nth", 1) - 1, times=spec.get("times", 1),
            status=spec.get("status"), message=spec.get("message"),
        )
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
        log.info("fault %d added: %s", fault.id, fault.to_json())
        return fault

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()


TRAFFIC = Traffic()


class Interceptor:
    """WSGI middleware in front of moto's DomainDispatcherApplication: records each
    AWS request and answers it with an injected fault instead of moto when one matches."""

    def __init__(self, moto: Any, traffic: Traffic = TRAFFIC):
        self.moto = moto
        self.traffic = traffic

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.moto(environ, start_response)
        app = self.moto.get_application(environ)  # what moto's own __call__ does
        with self.moto.lock:
            app_name = next((name for name, known in self.moto.app_instances.items() if known is app), "unknown")
        call = describe_call(environ, app_name)
        record, fault = self.traffic.arrived(call)
        if fault is not None:
            response = fault.response(call)
            record["status"] = response.status_code
            log.info("fault %d: %s %s:%s in %s (%s) failed with %s", fault.id, call.service, call.action,
                     call.identifier, call.account, response.status_code, fault.code)
            return response(environ, start_response)

        def recording_start_response(status: str, headers: Any, *args: Any) -> Any:
            record["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        return app(environ, recording_start_response)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


def _optional_string(spec: dict[str, Any], key: str) -> bool:
    return spec.get(key) is None or isinstance(spec[key], str)


def _positive(spec: dict[str, Any], key: str) -> bool:
    value = spec.get(key, 1)
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _valid_fault(spec: Any) -> bool:
    if not isinstance(spec, dict):
        return False
    status = spec.get("status")
    return (
        all(isinstance(spec.get(key), str) and spec[key] for key in ("service", "action", "code"))
        and all(_optional_string(spec, key) for key in ("account", "identifier", "message"))
        and _positive(spec, "nth") and _positive(spec, "times")
        and (status is None or (isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599))
    )


def faults_app(environ: dict[str, Any], start_response: Callable, traffic: Traffic = TRAFFIC) -> Iterable[bytes]:
    """GET lists the pending faults, POST adds one, DELETE clears them all."""
    request = Request(environ)
    if request.method == "POST":
        spec = request.get_json(force=True, silent=True)
        if _valid_fault(spec):
            response = _json(traffic.add_fault(spec).to_json())
        else:
            response = _json({"message": 'expected {"service", "action", "code", "account"?, "identifier"?, '
                                         '"nth"?: int >= 1, "times"?: int >= 1, "status"?: 400-599, '
                                         '"message"?}'}, 400)
    elif request.method == "DELETE":
        traffic.clear_faults()
        response = _json({"faults": []})
    else:
        response = _json({"faults": traffic.faults()})
    return response(environ, start_response)


def requests_app(environ: dict[str, Any], start_response: Callable, traffic: Traffic = TRAFFIC) -> Iterable[bytes]:
    """GET lists the recorded requests in arrival order, DELETE clears them."""
    request = Request(environ)
    if request.method == "DELETE":
        traffic.clear_requests()
        response = _json({"requests": []})
    else:
        response = _json({"requests": traffic.requests()})
    return response(environ, start_response)
