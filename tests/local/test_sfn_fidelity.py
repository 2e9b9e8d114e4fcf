"""Self-test of the launcher's Step Functions fidelity patches (sfn_fidelity.py): state
machines run in moto's engine, their Task states invoking the fixture functions
(echo answers its event, fail fails with SourceNotFound) through the invoke host.

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import json
import time
import unittest
from typing import Any

from test_stack import SharedStackTestCase

ROLE = "arn:aws:iam::123456789012:role/sfn"


def invoke(function: str, **fields: Any) -> dict[str, Any]:
    """A Task state invoking a fixture function (arn:aws:states:::lambda:invoke)."""
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function, "Payload": {}},
        "Next": "Done",
    }
    return state | fields


def catch(*errors: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": list(errors), "ResultPath": "$.caught", "Next": "Caught"}]


class StepFunctionsFidelityTest(SharedStackTestCase):
    def setUp(self) -> None:
        self.sfn = self.client("stepfunctions")

    def run_machine(self, name: str, task: dict[str, Any], execution_input: Any = None) -> dict[str, Any]:
        """Runs StartAt Task -> Done, with a Caught state for catchers; answers the
        finished execution, with `entered`: the states it entered, and `attempts`: how
        many times the Task was scheduled."""
        definition = {
            "StartAt": "Task",
            "States": {
                "Task": task,
                "Caught": {"Type": "Pass", "End": True},
                "Done": {"Type": "Succeed"},
            },
        }
        machine = self.sfn.create_state_machine(
            name=f"sfn-fidelity-{name}", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        # Named: moto 5.2.5 reuses the name None for every unnamed execution.
        execution = self.sfn.start_execution(
            stateMachineArn=machine, name=f"{name}-1", input=json.dumps(execution_input or {})
        )["executionArn"]
        deadline = time.monotonic() + 30
        while (described := self.sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            self.assertLess(time.monotonic(), deadline, "execution still running")
            time.sleep(0.1)
        events = self.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        described["entered"] = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        described["attempts"] = sum(e["type"] == "TaskScheduled" for e in events)
        return described

    def assertFailedWith(self, execution: dict[str, Any], error: str) -> None:
        self.assertEqual((execution["status"], execution.get("error")), ("FAILED", error), execution.get("cause"))
        self.assertNotIn("Caught", execution["entered"])

    def test_states_all_does_not_catch_a_missing_parameters_path(self) -> None:
        # A JSONPath missing from the input is States.Runtime: the execution fails.
        task = invoke("echo", Parameters={"FunctionName": "echo", "Payload": {"id.$": "$.missing"}},
                      Catch=catch("States.ALL"))
        execution = self.run_machine("runtime-parameters", task, {"present": 1})
        self.assertFailedWith(execution, "States.Runtime")
        self.assertIn("$.missing", execution["cause"])
        self.assertEqual(execution["attempts"], 0)

    def test_states_all_neither_retries_nor_catches_a_missing_result_selector_path(self) -> None:
        task = invoke("echo", ResultSelector={"id.$": "$.Payload.missing"},
                      Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2,
                              "BackoffRate": 1}],
                      Catch=catch("States.ALL"))
        execution = self.run_machine("runtime-result-selector", task)
        self.assertFailedWith(execution, "States.Runtime")
        self.assertEqual(execution["attempts"], 1)  # the function ran once, never retried

    def test_states_runtime_cannot_be_caught_even_by_name(self) -> None:
        task = invoke("echo", ResultSelector={"id.$": "$.Payload.missing"},
                      Retry=[{"ErrorEquals": ["States.Runtime"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                      Catch=catch("States.Runtime"))
        execution = self.run_machine("runtime-by-name", task)
        self.assertFailedWith(execution, "States.Runtime")
        self.assertEqual(execution["attempts"], 1)

    def test_data_limit_exceeded_is_caught_only_by_name(self) -> None:
        # echo answers its ~300 KB event: the task's result exceeds the 256 KB quota.
        big = {"big": "x" * 150_000}
        parameters = {"FunctionName": "echo", "Payload": {"a.$": "$.big", "b.$": "$.big"}}
        execution = self.run_machine("data-limit-all", invoke("echo", Parameters=parameters,
                                                              Catch=catch("States.ALL")), big)
        self.assertFailedWith(execution, "States.DataLimitExceeded")
        execution = self.run_machine("data-limit-named", invoke("echo", Parameters=parameters, Catch=[
            *catch("States.DataLimitExceeded"), *catch("States.ALL")]), big)
        self.assertEqual(execution["status"], "SUCCEEDED", execution.get("cause"))
        self.assertEqual(json.loads(execution["output"])["caught"]["Error"], "States.DataLimitExceeded")

    def test_states_all_still_retries_and_catches_other_errors(self) -> None:
        # Control: an ordinary task error (the function's SourceNotFound) is retried and
        # caught by States.ALL.
        task = invoke("fail", Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                      Catch=catch("States.ALL"))
        execution = self.run_machine("ordinary-error", task)
        self.assertEqual(execution["status"], "SUCCEEDED", execution.get("cause"))
        self.assertEqual(execution["entered"], ["Task", "Caught"])
        self.assertEqual(execution["attempts"], 2)
        self.assertEqual(json.loads(execution["output"])["caught"]["Error"], "SourceNotFound")


if __name__ == "__main__":
    unittest.main()
