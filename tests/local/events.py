"""Listening to the lifecycle events the state machines publish, as a team would: an
EventBridge rule on the bus with an SQS queue as its target.

`POST /understudy/events/subscribe {"name", "bus"?, "pattern"?}` creates (in the stack's
account) the SQS queue `<name>` and a rule `<name>` on `bus` (default `default`) whose
pattern is `pattern` (default: every event of source `understudy`), targeting the queue;
it answers `{"queue_url", "rule"}`. `POST /understudy/events/receive {"queue_url"}` reads
and deletes every message the queue holds and answers `{"events": [...]}`, each the
EventBridge event the rule delivered (`source`, `detail-type`, `detail`, `resources`), or
the SNS notification a topic delivered.

`POST /understudy/events/put {"entries": [PutEvents entries]}` puts events as a producer
would (CI, or production's forwarding rule), answering PutEvents' answer (no EventBridge SDK
crate is built for the tests). `POST /understudy/events/subscribe-topic {"name", "topic"}`
makes the SQS queue `<name>` and subscribes it to the SNS topic, answering `{"queue_url"}`.

The rule and the queue are moto's own (PutRule, PutTargets, ReceiveMessage through
boto3 against the emulator): the delivery from the bus to the queue is moto's, as it
would be EventBridge's.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response

import lambda_host

EVENT_SOURCE = "understudy"


def _clients(endpoint: str, region: str) -> tuple[Any, Any]:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    return (
        session.client("events", endpoint_url=endpoint),
        session.client("sqs", endpoint_url=endpoint),
    )


def subscribe(endpoint: str, region: str, name: str, bus: str, pattern: dict[str, Any]) -> dict[str, Any]:
    events, sqs = _clients(endpoint, region)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{region}:{lambda_host.ACCOUNT_ID}:{name}"
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return {"queue_url": queue_url, "rule": name}


def put(endpoint: str, region: str, entries: list[Any]) -> dict[str, Any]:
    events, _ = _clients(endpoint, region)
    answer = events.put_events(Entries=entries)
    return {"FailedEntryCount": answer.get("FailedEntryCount", 0), "Entries": answer.get("Entries", [])}


def subscribe_topic(endpoint: str, region: str, name: str, topic: str) -> dict[str, Any]:
    import boto3

    _, sqs = _clients(endpoint, region)
    sns = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    ).client("sns", endpoint_url=endpoint)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{region}:{lambda_host.ACCOUNT_ID}:{name}"
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {"queue_url": queue_url}


def receive(endpoint: str, region: str, queue_url: str) -> list[Any]:
    _, sqs = _clients(endpoint, region)
    received = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return received
        for message in messages:
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def events_app(endpoint: Callable[[], str], region: str) -> dict[str, Callable]:
    """The endpoints, by path; `endpoint()` is moto's URL once it listens."""

    def respond(environ: dict[str, Any], start_response: Callable, answer: Any, status: int) -> Iterable[bytes]:
        return Response(json.dumps(answer), status, content_type="application/json")(environ, start_response)

    def subscribe_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = Request(environ).get_json(force=True, silent=True) or {}
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return respond(environ, start_response, {"message": 'POST {"name", "bus"?, "pattern"?}'}, 400)
        pattern = body.get("pattern") or {"source": [EVENT_SOURCE]}
        answer = subscribe(endpoint(), region, name, str(body.get("bus") or "default"), pattern)
        return respond(environ, start_response, answer, 200)

    def receive_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = Request(environ).get_json(force=True, silent=True) or {}
        queue_url = body.get("queue_url")
        if not isinstance(queue_url, str):
            return respond(environ, start_response, {"message": 'POST {"queue_url"}'}, 400)
        return respond(environ, start_response, {"events": receive(endpoint(), region, queue_url)}, 200)

    def put_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = Request(environ).get_json(force=True, silent=True) or {}
        entries = body.get("entries")
        if not isinstance(entries, list) or not entries:
            return respond(environ, start_response, {"message": 'POST {"entries": [...]}'}, 400)
        return respond(environ, start_response, put(endpoint(), region, entries), 200)

    def subscribe_topic_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = Request(environ).get_json(force=True, silent=True) or {}
        name, topic = body.get("name"), body.get("topic")
        if not isinstance(name, str) or not name or not isinstance(topic, str):
            return respond(environ, start_response, {"message": 'POST {"name", "topic"}'}, 400)
        return respond(environ, start_response, subscribe_topic(endpoint(), region, name, topic), 200)

    return {
        "/understudy/events/subscribe": subscribe_app,
        "/understudy/events/receive": receive_app,
        "/understudy/events/put": put_app,
        "/understudy/events/subscribe-topic": subscribe_topic_app,
    }
