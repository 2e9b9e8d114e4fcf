"""Self-test of the launcher's EventBridge fidelity patches (events_fidelity.py): rules
whose targets are the fixture functions (echo answers its event, fail fails with
SourceNotFound) or an SNS topic, and the status-change events of Step Functions
executions run in moto's engine.

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import json
import time
import unittest
from typing import Any, Callable

from test_stack import FUNCTION_ARN, REGION, SharedStackTestCase

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn"
DELIVERIES = "/understudy/events/deliveries"
TERMINAL_PATTERN = {
    "source": ["aws.states"],
    "detail-type": ["Step Functions Execution Status Change"],
    "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
}


class EventsFidelityTest(SharedStackTestCase):
    def setUp(self) -> None:
        self.events = self.client("events")
        self.sqs = self.client("sqs")
        self.assertEqual(self.control(DELIVERIES, {}), (200, {"deliveries": []}))

    def rule(self, name: str, pattern: dict[str, Any], *targets: dict[str, Any]) -> None:
        """A rule on the default bus, removed after the test."""
        self.events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
        self.events.put_targets(Rule=name, Targets=list(targets))
        self.addCleanup(self.events.delete_rule, Name=name)
        self.addCleanup(self.events.remove_targets, Rule=name, Ids=[target["Id"] for target in targets])

    def queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def put_event(self, source: str, detail: dict[str, Any]) -> None:
        answer = self.events.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps(detail)}])
        self.assertEqual(answer["FailedEntryCount"], 0, answer)

    def wait_for(self, what: str, probe: Callable[[], Any], seconds: float = 4) -> Any:
        deadline = time.monotonic() + seconds
        while not (found := probe()):
            self.assertLess(time.monotonic(), deadline, f"no {what}")
            time.sleep(0.05)
        return found

    def settled_deliveries(self, rule: str, count: int) -> list[dict[str, Any]]:
        def probe() -> list[dict[str, Any]] | None:
            status, body = self.control(DELIVERIES)
            self.assertEqual(status, 200)
            mine = [delivery for delivery in body["deliveries"] if delivery["rule"] == rule]
            settled = len(mine) == count and all(delivery["status"] != "pending" for delivery in mine)
            return mine if settled else None

        return self.wait_for(f"{count} settled deliveries of {rule}", probe)

    def drain(self, url: str) -> list[Any]:
        bodies = []
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    # --- Lambda targets -------------------------------------------------------------

    def test_a_lambda_target_is_invoked_with_the_event(self) -> None:
        self.rule("fidelity-lambda", {"source": ["fidelity.lambda"]},
                  {"Id": "event", "Arn": FUNCTION_ARN + "echo"},
                  {"Id": "input", "Arn": FUNCTION_ARN + "echo:live", "Input": '{"constant": 1}'},
                  {"Id": "path", "Arn": FUNCTION_ARN + "echo", "InputPath": "$.detail"})
        started = time.monotonic()
        self.put_event("fidelity.lambda", {"n": 7})
        self.assertLess(time.monotonic() - started, 1, "PutEvents waited for the functions")
        deliveries = self.settled_deliveries("fidelity-lambda", 3)
        for delivery in deliveries:
            self.assertEqual((delivery["function"], delivery["status"], delivery["attempts"], delivery["error"]),
                             ("echo", "succeeded", 1, None), delivery)
        events = [delivery["answer"]["event"] for delivery in deliveries]
        whole = next(event for event in events if "detail" in event)
        self.assertEqual((whole["source"], whole["detail-type"], whole["detail"]), ("fidelity.lambda", "Test", {"n": 7}))
        self.assertEqual((whole["account"], whole["region"], whole["version"]), (ACCOUNT, REGION, "0"))
        self.assertRegex(whole["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertCountEqual([event for event in events if event is not whole], [{"constant": 1}, {"n": 7}])

    def test_a_failing_function_is_attempted_three_times(self) -> None:
        self.rule("fidelity-lambda-fail", {"source": ["fidelity.fail"]}, {"Id": "fail", "Arn": FUNCTION_ARN + "fail"})
        self.put_event("fidelity.fail", {})
        [delivery] = self.settled_deliveries("fidelity-lambda-fail", 1)
        self.assertEqual((delivery["status"], delivery["attempts"], delivery["error"]),
                         ("failed", 3, "SourceNotFound"), delivery)
        self.assertEqual(delivery["answer"]["errorType"], "SourceNotFound")

    def test_an_unknown_function_is_a_failed_delivery(self) -> None:
        self.rule("fidelity-lambda-nope", {"source": ["fidelity.nope"]}, {"Id": "nope", "Arn": FUNCTION_ARN + "nope"})
        self.put_event("fidelity.nope", {})
        [delivery] = self.settled_deliveries("fidelity-lambda-nope", 1)
        self.assertEqual(delivery, {"rule": "fidelity-lambda-nope", "function": "nope", "status": "failed",
                                    "attempts": 1, "answer": None, "error": "ResourceNotFoundException"})

    # --- SNS targets ----------------------------------------------------------------

    def test_an_sns_target_reaches_the_topic_subscribers(self) -> None:
        sns = self.client("sns")
        topic = sns.create_topic(Name="fidelity-topic")["TopicArn"]
        url, queue_arn = self.queue("fidelity-topic-subscriber")
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        self.rule("fidelity-sns", {"source": ["fidelity.sns"]}, {"Id": "topic", "Arn": topic})
        self.put_event("fidelity.sns", {"n": 3})
        [notification] = self.wait_for("SNS notification", lambda: self.drain(url))
        self.assertEqual(notification["TopicArn"], topic)
        event = json.loads(notification["Message"])
        self.assertEqual((event["source"], event["detail"], event["account"]), ("fidelity.sns", {"n": 3}, ACCOUNT))

    # --- Step Functions status-change events ----------------------------------------

    def execution_events(self, machine: str, definition: dict[str, Any],
                         stop: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """Runs the machine once; answers the finished execution, the events the
        terminal-status rule (TERMINAL_PATTERN) delivered for it, and every status
        event of it."""
        sfn = self.client("stepfunctions")
        terminal_url, terminal_arn = self.queue(f"{machine}-terminal")
        all_url, all_arn = self.queue(f"{machine}-all")
        arn = sfn.create_state_machine(name=machine, definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
        self.rule(f"{machine}-terminal", TERMINAL_PATTERN, {"Id": "queue", "Arn": terminal_arn})
        self.rule(f"{machine}-all", {"source": ["aws.states"], "detail": {"stateMachineArn": [arn]}},
                  {"Id": "queue", "Arn": all_arn})
        execution = sfn.start_execution(stateMachineArn=arn, name=f"{machine}-1", input='{"n": 1}')["executionArn"]
        if stop:
            self.wait_for("a running Wait state", lambda: any(
                event["type"] == "WaitStateEntered"
                for event in sfn.get_execution_history(executionArn=execution)["events"]))
            sfn.stop_execution(executionArn=execution)
        described = self.wait_for("finished execution", lambda: (
            found if (found := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" else None))
        mine: Callable[[list[Any]], list[Any]] = lambda events: [
            event for event in events if event["detail"]["executionArn"] == execution]
        terminal = self.wait_for("terminal status event", lambda: mine(self.drain(terminal_url)))
        every = self.wait_for("status events", lambda: mine(self.drain(all_url)))
        time.sleep(0.3)  # a duplicate would be put right after the first
        terminal += mine(self.drain(terminal_url))
        every += mine(self.drain(all_url))
        return described, terminal, every

    def assertStatusEvent(self, event: dict[str, Any], execution: dict[str, Any], status: str) -> None:
        self.assertEqual((event["source"], event["detail-type"]), ("aws.states", "Step Functions Execution Status Change"))
        # (moto's own SQS delivery leaves `account` out of the event: its default
        # InputTemplate has no <account>.)
        self.assertEqual((event["resources"], event["region"]), ([execution["executionArn"]], REGION))
        detail = event["detail"]
        self.assertEqual((detail["status"], detail["stateMachineArn"], detail["name"], detail["input"]),
                         (status, execution["stateMachineArn"], execution["name"], '{"n":1}'))
        self.assertEqual(detail["startDate"], int(execution["startDate"].timestamp() * 1000))
        if status == "RUNNING":
            self.assertIsNone(detail["stopDate"])
        else:
            self.assertIsInstance(detail["stopDate"], int)
            self.assertGreaterEqual(detail["stopDate"], detail["startDate"])

    def test_a_failed_execution_puts_one_failed_event(self) -> None:
        definition = {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Boom", "Cause": "because"}}}
        execution, terminal, every = self.execution_events("fidelity-fails", definition)
        self.assertEqual(execution["status"], "FAILED")
        self.assertEqual(len(terminal), 1, terminal)
        self.assertStatusEvent(terminal[0], execution, "FAILED")
        detail = terminal[0]["detail"]
        self.assertEqual((detail["error"], detail["cause"], detail["output"]), ("Boom", "because", None))
        self.assertEqual(sorted(event["detail"]["status"] for event in every), ["FAILED", "RUNNING"])
        self.assertStatusEvent(next(e for e in every if e["detail"]["status"] == "RUNNING"), execution, "RUNNING")

    def test_a_stopped_execution_puts_one_aborted_event(self) -> None:
        definition = {"StartAt": "Linger", "States": {"Linger": {"Type": "Wait", "Seconds": 60, "End": True}}}
        execution, terminal, every = self.execution_events("fidelity-stopped", definition, stop=True)
        self.assertEqual(execution["status"], "ABORTED")
        self.assertEqual(len(terminal), 1, terminal)
        self.assertStatusEvent(terminal[0], execution, "ABORTED")
        self.assertEqual(sorted(event["detail"]["status"] for event in every), ["ABORTED", "RUNNING"])

    def test_a_timed_out_execution_puts_one_timed_out_event(self) -> None:
        definition = {"StartAt": "Linger", "TimeoutSeconds": 1,
                      "States": {"Linger": {"Type": "Wait", "Seconds": 60, "End": True}}}
        execution, terminal, _ = self.execution_events("fidelity-timed-out", definition)
        self.assertEqual(execution["status"], "TIMED_OUT")
        self.assertEqual([event["detail"]["status"] for event in terminal], ["TIMED_OUT"])

    def test_a_succeeded_execution_puts_running_then_succeeded(self) -> None:
        sfn = self.client("stepfunctions")
        url, queue_arn = self.queue("fidelity-ok-all")
        terminal_url, terminal_arn = self.queue("fidelity-ok-terminal")
        definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}
        arn = sfn.create_state_machine(name="fidelity-ok", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
        self.rule("fidelity-ok-all", {"source": ["aws.states"], "detail": {"stateMachineArn": [arn]}},
                  {"Id": "queue", "Arn": queue_arn})
        self.rule("fidelity-ok-terminal", TERMINAL_PATTERN, {"Id": "queue", "Arn": terminal_arn})
        execution_arn = sfn.start_execution(stateMachineArn=arn, name="fidelity-ok-1", input='{"n": 1}')["executionArn"]
        received: list[Any] = []
        self.wait_for("RUNNING and SUCCEEDED", lambda: received.extend(self.drain(url)) or len(received) >= 2)
        execution = sfn.describe_execution(executionArn=execution_arn)
        by_status = {event["detail"]["status"]: event for event in received}
        self.assertEqual(sorted(by_status), ["RUNNING", "SUCCEEDED"])
        self.assertStatusEvent(by_status["RUNNING"], execution, "RUNNING")
        self.assertStatusEvent(by_status["SUCCEEDED"], execution, "SUCCEEDED")
        detail = by_status["SUCCEEDED"]["detail"]
        self.assertEqual((detail["output"], detail["outputDetails"], detail["error"], detail["cause"]),
                         ('{"ok":true}', {"included": True}, None, None))
        self.assertEqual(by_status["RUNNING"]["detail"]["output"], None)
        # The terminal-failure rule's pattern does not match a success.
        self.assertEqual([e for e in self.drain(terminal_url) if e["detail"]["executionArn"] == execution_arn], [])

    def test_an_express_execution_puts_no_events(self) -> None:
        sfn = self.client("stepfunctions")
        url, queue_arn = self.queue("fidelity-express")
        definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
        express = sfn.create_state_machine(name="fidelity-express", definition=definition, roleArn=ROLE,
                                           type="EXPRESS")["stateMachineArn"]
        standard = sfn.create_state_machine(name="fidelity-standard", definition=definition,
                                            roleArn=ROLE)["stateMachineArn"]
        self.rule("fidelity-express", {"source": ["aws.states"], "detail": {"stateMachineArn": [express, standard]}},
                  {"Id": "queue", "Arn": queue_arn})
        execution = sfn.start_execution(stateMachineArn=express, name="fidelity-express-1")["executionArn"]
        self.wait_for("finished express execution",
                      lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING")
        # The standard execution's events, put after the express one ended, mark the time.
        sfn.start_execution(stateMachineArn=standard, name="fidelity-standard-1")
        received: list[Any] = []
        self.wait_for("the standard execution's events", lambda: received.extend(self.drain(url)) or any(
            event["detail"]["status"] == "SUCCEEDED" for event in received))
        self.assertEqual({event["detail"]["stateMachineArn"] for event in received}, {standard})


if __name__ == "__main__":
    unittest.main()
