"""EventBridge deliveries that moto 5.2.5 does not make, made as AWS makes them.

moto's `Rule.send_to_targets` (moto/events/models.py) delivers only to CloudWatch Logs,
archives, SQS queues, other event buses and API destinations: a rule targeting a Lambda
function or an SNS topic makes PutEvents answer a 500 (NotImplementedError). And moto's
Step Functions engine (moto/stepfunctions/parser) never puts the status-change events
AWS puts on the default bus. Like sfn_fidelity's and rds_fidelity's patches, these wrap
moto's classes (`_patch`: the replacement receives the original first); every other
target is still delivered by moto.

- Lambda targets (`_patch_targets`, `_deliver_to_lambda`). A target whose Arn is
  `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` is invoked as
  EventBridge invokes it: asynchronously ("EventBridge invokes your function
  asynchronously", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html
  and https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html), so PutEvents
  answers at once and the function runs in a background thread, through the local
  invoke host's Lambda Invoke API (lambda_host.InvokeHost as a WSGI app). The payload is
  the event (`version`, `id`, `detail-type`, `source`, `account`, `time` as ISO 8601,
  `region`, `resources`, `detail`), or the target's `Input` (constant JSON, sent as
  given), or its `InputPath` applied to the event, or its `InputTransformer` as moto
  computes it for SQS targets (moto inserts a string value unquoted, where AWS quotes a
  variable standing outside a JSON string: a template that is not JSON then, such as
  `{"status": <status>}` for a string, is a failed delivery). Asynchronous invocation retries a function error twice
  ("If the function returns an error, by default Lambda attempts to run it two more
  times", invocation-async.html): a function error is attempted up to 3 times, with
  `RETRY_PAUSE_S` between attempts instead of AWS's minutes. An unknown function
  (ResourceNotFoundException) is not retried, as EventBridge does not retry a target
  that does not exist; it is a failed delivery, never a PutEvents error.
  Every Lambda delivery is recorded (`deliveries_app`): `GET /understudy/events/deliveries`
  answers `{"deliveries": [{"rule", "function", "status", "attempts", "answer",
  "error"}]}` in delivery order (status `pending` | `succeeded` | `failed`; `answer`
  the last answer of the function parsed as JSON, its error document for a function
  error, null while pending or when the function never ran; `error` the errorType, or
  `ResourceNotFoundException`, or null); `POST {}` clears the record.
- SNS targets (`_deliver_to_sns`). A target `arn:aws:sns:<region>:<account>:<topic>`
  publishes the (transformed) event as the message to that topic through moto's SNS
  backend, so the topic's subscriptions (SQS queues) receive it as on AWS
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-targets.html). A missing
  topic is logged and dropped (a failed invocation on AWS), not a PutEvents error.
- Step Functions status-change events (`_patch_status_events`). AWS: "Step Functions
  generates and sends events to the default EventBridge event bus" for Standard
  workflows whenever an execution's status changes
  (https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html):
  source `aws.states`, detail-type `Step Functions Execution Status Change`,
  resources `[executionArn]`, detail `{"executionArn", "stateMachineArn", "name",
  "status", "startDate", "stopDate", "input", "inputDetails", "output",
  "outputDetails", "error", "cause"}` (dates in epoch milliseconds, the rest strings or
  null). Put on the execution's account's and Region's default bus through moto's
  EventBridge backend, so its rules (SQS, Lambda and SNS targets alike) see them:
  RUNNING when the execution starts (`ExecutionWorker.start`, before the engine's
  thread runs, so it always comes first), then exactly one of SUCCEEDED, FAILED,
  TIMED_OUT or ABORTED (StopExecution included) when the engine reports the end
  (`BaseExecutionWorkerCommunication._reflect_execution_status`). Express workflows and
  TestState runs put none, as on AWS.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import quote

from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from slow_transitions import _patch

log = logging.getLogger("understudy.events")

RETRY_PAUSE_S = 0.2
ATTEMPTS = 3  # the first invocation and Lambda's two asynchronous retries
STATUS_SOURCE = "aws.states"
STATUS_DETAIL_TYPE = "Step Functions Execution Status Change"

_host: Callable | None = None  # the invoke host, a WSGI app
_deliveries: list[dict[str, Any]] = []
_deliveries_lock = threading.Lock()
_installed: set[str] = set()
_status_lock = threading.Lock()


def install(host: Callable) -> None:
    """Delivers Lambda targets through `host` (lambda_host.InvokeHost, or any WSGI app
    serving the Lambda Invoke API) and SNS targets through moto's SNS; before moto
    serves its first EventBridge request."""
    global _host
    _host = host
    if "events" not in _installed:
        _installed.add("events")
        _patch_targets()


def install_for(service: str) -> None:
    """Patches moto's Step Functions engine when moto builds the Step Functions app."""
    if service == "stepfunctions" and "stepfunctions" not in _installed:
        _installed.add("stepfunctions")
        _patch_status_events()


# --- Targets ------------------------------------------------------------------------


def _target_kind(arn: str) -> str | None:
    """`lambda` or `sns` for the targets delivered here, None for moto's."""
    parts = arn.split(":")
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return "lambda"
    if len(parts) == 6 and parts[2] == "sns":
        return "sns"
    return None


def _iso_time(value: Any) -> Any:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def aws_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge hands it to a target (moto keeps `time` in epoch
    seconds and an `ingestion-time` of its own)."""
    shaped = {key: value for key, value in event.items() if key != "ingestion-time"}
    shaped["time"] = _iso_time(shaped.get("time"))
    return shaped


def target_payload(target: dict[str, Any], event: dict[str, Any], transform_input: bool = True) -> str:
    """What the target receives, as JSON text: the event, or the target's Input,
    InputPath or InputTransformer applied to it (none for a replay, as moto does)."""
    shaped = aws_event(event)
    if not transform_input:
        return json.dumps(shaped)
    if "Input" in target:
        return target["Input"]
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        matches = parse(target["InputPath"]).find(shaped)
        return json.dumps(matches[0].value if matches else None)
    transformer = target.get("InputTransformer")
    if transformer:
        from moto.events.utils import EventTemplateParser

        return json.dumps(EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=dict(shaped, **{"ingestion-time": event.get("ingestion-time")}),
        ))
    return json.dumps(shaped)


def _patch_targets() -> None:
    from moto.events.models import Rule

    @_patch(Rule, "send_to_targets")
    def send_to_targets(original: Callable, rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
        ours = [target for target in rule.targets if _target_kind(target["Arn"])]
        if not ours:
            return original(rule, event, transform_input)
        if not rule.event_pattern.matches_event(event):
            return None
        for target in ours:
            try:
                payload = target_payload(target, event, transform_input)
            except Exception as error:  # noqa: BLE001 - a bad template fails this target only
                log.warning("rule %s: no payload for %s: %r", rule.name, target["Arn"], error)
                if _target_kind(target["Arn"]) == "lambda":
                    _record(rule.name, target["Arn"], "failed", error=type(error).__name__)
                continue
            if _target_kind(target["Arn"]) == "lambda":
                _deliver_to_lambda(rule.name, target["Arn"], payload)
            else:
                _deliver_to_sns(rule.name, target["Arn"], payload)
        others = [target for target in rule.targets if not _target_kind(target["Arn"])]
        if others:
            rest = copy.copy(rule)  # shares everything but the target list
            rest.targets = others
            original(rest, event, transform_input)
        return None


def _function_name(arn: str) -> str:
    return arn.split(":function:", 1)[1].split(":", 1)[0]


def _record(rule: str, arn: str, status: str, error: str | None = None) -> dict[str, Any]:
    delivery = {"rule": rule, "function": _function_name(arn), "status": status,
                "attempts": 0, "answer": None, "error": error}
    with _deliveries_lock:
        _deliveries.append(delivery)
    return delivery


def deliveries() -> list[dict[str, Any]]:
    with _deliveries_lock:
        return [dict(delivery) for delivery in _deliveries]


def clear_deliveries() -> None:
    with _deliveries_lock:
        _deliveries.clear()


def _deliver_to_lambda(rule: str, arn: str, payload: str) -> None:
    delivery = _record(rule, arn, "pending")
    threading.Thread(target=_invoke, args=(delivery, arn, payload.encode()), daemon=True,
                     name=f"eventbridge-{rule}").start()


def _invoke(delivery: dict[str, Any], arn: str, payload: bytes) -> None:
    """Runs in its own thread: Lambda's asynchronous invocation, retries included."""
    status, answer, error = "failed", None, None
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 1:
            time.sleep(RETRY_PAUSE_S)
        with _deliveries_lock:
            delivery["attempts"] = attempt
        try:
            response = Client(_host).post(
                f"/2015-03-31/functions/{quote(arn, safe='')}/invocations", data=payload,
                headers={"X-Amz-Invocation-Type": "RequestResponse"},
            )
            body = response.get_data()
        except Exception as failure:  # noqa: BLE001 - recorded, the event is dropped
            log.exception("EventBridge delivery to %s failed", arn)
            status, answer, error = "failed", None, type(failure).__name__
            break
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            answer = None
        if response.status_code != 200:
            # ResourceNotFoundException and other refusals: not retried.
            status, answer = "failed", None
            error = response.headers.get("x-amzn-ErrorType") or f"HTTP {response.status_code}"
            break
        if response.headers.get("X-Amz-Function-Error"):
            status = "failed"
            error = answer.get("errorType") if isinstance(answer, dict) else "Unhandled"
            continue  # a function error: Lambda retries it
        status, error = "succeeded", None
        break
    with _deliveries_lock:
        delivery.update(status=status, answer=answer, error=error)
    log.info("EventBridge rule %s -> %s: %s after %d attempt(s)%s", delivery["rule"], delivery["function"],
             status, delivery["attempts"], f" ({error})" if error else "")


def _deliver_to_sns(rule: str, arn: str, payload: str) -> None:
    from moto.sns.models import sns_backends

    _, _, _, region, account, _ = arn.split(":")
    try:
        sns_backends[account][region].publish(message=payload, arn=arn)
    except Exception as error:  # noqa: BLE001 - a failed invocation on AWS, not a PutEvents error
        log.warning("EventBridge rule %s -> %s: not published (%r)", rule, arn, error)


def deliveries_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """GET answers the Lambda deliveries in order; POST {} clears them."""
    request = Request(environ)
    status = 200
    if request.method == "POST":
        if request.get_json(force=True, silent=True) == {}:
            clear_deliveries()
            body: Any = {"deliveries": []}
        else:
            body, status = {"message": "POST {} clears the deliveries"}, 400
    elif request.method == "GET":
        body = {"deliveries": deliveries()}
    else:
        body, status = {"message": "GET or POST {}"}, 405
    return Response(json.dumps(body), status, content_type="application/json")(environ, start_response)


# --- Step Functions status-change events --------------------------------------------


def _epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def status_event(execution: Any) -> dict[str, Any]:
    """The PutEvents entry AWS would put for the execution's current status."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    succeeded = execution.exec_status == ExecutionStatus.SUCCEEDED
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.exec_status.value,
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": None if execution.exec_status == ExecutionStatus.RUNNING else _epoch_ms(execution.stop_date),
        "input": to_json_str(execution.input_data, separators=(",", ":")),
        "inputDetails": {"included": True},
        "output": to_json_str(execution.output, separators=(",", ":")) if succeeded else None,
        "outputDetails": {"included": True} if succeeded else None,
        "error": execution.error,
        "cause": execution.cause,
    }
    return {
        "Source": STATUS_SOURCE,
        "DetailType": STATUS_DETAIL_TYPE,
        "Detail": json.dumps(detail),
        "Resources": [execution.exec_arn],
        "EventBusName": "default",
    }


def _reports_status(execution: Any) -> bool:
    """Standard workflows' executions do; Express ones and TestState runs do not."""
    from moto.stepfunctions.parser.backend.test_state.execution import TestStateExecution

    # moto's StateMachine keeps CreateStateMachine's type in `type`; its `sm_type`, which
    # the engine copies to the execution, is always STANDARD.
    machine_type = getattr(execution.state_machine, "type", None) or execution.sm_type
    return machine_type == "STANDARD" and not isinstance(execution, TestStateExecution)


def put_status_event(execution: Any) -> None:
    """Puts the execution's status on its account's and Region's default bus, once
    per status."""
    from moto.events.models import events_backends

    status = execution.exec_status.value
    with _status_lock:
        reported = execution.__dict__.setdefault("_understudy_reported", set())
        terminal = status != "RUNNING"
        if status in reported or (terminal and reported - {"RUNNING"}):
            return  # one event per status; one terminal status per execution
        reported.add(status)
    entry = status_event(execution)
    try:
        events_backends[execution.account_id][execution.region_name].put_events([entry])
    except Exception:  # noqa: BLE001 - never break the execution itself
        log.exception("%s %s: status event not put", execution.exec_arn, status)


def _patch_status_events() -> None:
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    # Execution.start sets RUNNING, then starts the worker (SyncExecutionWorker, for
    # StartSyncExecution, overrides start and runs in the request: Express only).
    @_patch(ExecutionWorker, "start")
    def start(original: Callable, worker: Any) -> None:
        execution = getattr(worker._execution_communication, "execution", None)
        if execution is not None and _reports_status(execution):
            put_status_event(execution)
        original(worker)

    # The engine's thread reports the end here once, with the status it ended in
    # (ABORTED after StopExecution's env.set_stop, TIMED_OUT after TimeoutSeconds).
    @_patch(BaseExecutionWorkerCommunication, "_reflect_execution_status")
    def reflect(original: Callable, comm: Any) -> None:
        original(comm)
        if _reports_status(comm.execution):
            put_status_event(comm.execution)
