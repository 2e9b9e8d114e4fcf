"""Self-test of the local stack launcher (stack.py), with Python stand-ins for the
function binaries (fixtures/functions/*/main.py, speaking the Lambda Runtime API).

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

from processes import gone

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REGION = "us-east-1"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


def build_fixture_binaries(bin_dir: Path) -> None:
    """The fixtures' "cargo build": an executable <bin-dir>/<name> per function."""
    bin_dir.mkdir()
    for function_dir in (FIXTURES / "functions").iterdir():
        binary = bin_dir / function_dir.name
        binary.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{function_dir / 'main.py'}'\n")
        binary.chmod(0o755)


def stack_command(tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(HERE / "stack.py"),
        "--bin-dir", str(tmp / "bin"),
        "--functions-dir", str(FIXTURES / "functions"),
        "--template", str(FIXTURES / "template.yaml"),
        "--log-dir", str(tmp / "logs"),
        *extra,
    ]


def read_exports(stdout) -> dict[str, str]:
    exports = {}
    for line in stdout:
        if line.startswith("# understudy local stack ready"):
            return exports
        key, value = line.removeprefix("export ").rstrip("\n").split("=", 1)
        exports[key] = value
    raise AssertionError(f"stack ended before it was ready; printed {exports}")




def wait_until_gone(pids: list[int], seconds: float = 5) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(gone(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if not gone(pid)]


def instance_pids(log_dir: Path) -> list[int]:
    pids = []
    for log in log_dir.glob("*.log"):
        pids += [int(pid) for pid in re.findall(r"fake runtime pid (\d+) started", log.read_text())]
    return pids


PRODUCTION_ROLE = "arn:aws:iam::111111111111:role/understudy-production"


class Stack:
    """A launcher process run on the fixture functions, with its exports."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="understudy-stack-test-"))
        build_fixture_binaries(self.tmp / "bin")
        env = os.environ | {"UNDERSTUDY_TEST_MARKER": "passed-through"}
        self.process = subprocess.Popen(
            stack_command(self.tmp, "--slow-polls", "2"), stdout=subprocess.PIPE, text=True, env=env
        )
        self.exports = read_exports(self.process.stdout)

    def stop(self) -> None:
        """Stops the launcher; asserts that it and every function process ended cleanly."""
        self.process.send_signal(signal.SIGTERM)
        try:
            returncode = self.process.wait(timeout=10)
        finally:
            self.process.kill()
            self.process.stdout.close()
        assert returncode == 0, f"stack exited with {returncode}"
        survivors = wait_until_gone(instance_pids(self.tmp / "logs"))
        assert not survivors, f"function processes outlived the stack: {survivors}"
        shutil.rmtree(self.tmp)


class StackTestCase(unittest.TestCase):
    """A local stack per test class (fixture functions, slow polls 2), and clients for it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.use_stack(Stack())

    @classmethod
    def use_stack(cls, stack: Stack) -> None:
        cls.tmp, cls.stack, cls.exports = stack.tmp, stack.process, stack.exports
        cls.invoke_endpoint = cls.exports["UNDERSTUDY_INVOKE_ENDPOINT"]
        cls.moto_endpoint = cls.exports["UNDERSTUDY_MOTO_ENDPOINT"]
        cls._stack = stack

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stack.stop()

    def invoke(self, function: str, payload: object = None) -> tuple[int, dict[str, str], object]:
        request = urllib.request.Request(
            f"{self.invoke_endpoint}/2015-03-31/functions/{function}/invocations",
            data=json.dumps(payload if payload is not None else {}).encode(), method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.load(error)

    def client(self, service: str, credentials: dict[str, str] | None = None, endpoint: str | None = None):
        """A client of the staging account (moto's default), or of the account the
        given sts:AssumeRole credentials act in; one attempt, no retries. Clients are
        kept for the class: making one costs more than most calls."""
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        endpoint = endpoint or self.moto_endpoint
        clients = self.__class__.__dict__.get("_clients")
        if clients is None:
            clients = self.__class__._clients = {}
        key = (service, keys["aws_access_key_id"], endpoint)
        if key not in clients:
            clients[key] = boto3.client(
                service, endpoint_url=endpoint, region_name=REGION,
                config=Config(retries={"total_max_attempts": 1}), **keys,
            )
        return clients[key]

    def production_client(self, service: str):
        """A client of the production account, reached as the functions reach it."""
        credentials = self.__class__.__dict__.get("_production_credentials")
        if credentials is None:
            credentials = self.__class__._production_credentials = self.client("sts").assume_role(
                RoleArn=PRODUCTION_ROLE, RoleSessionName="understudy-test"
            )["Credentials"]
        return self.client(service, credentials)

    def control(self, path: str, body: object = None, method: str | None = None) -> tuple[int, object]:
        """Calls one of the invoke host's /understudy/* endpoints."""
        request = urllib.request.Request(
            f"{self.invoke_endpoint}{path}", data=None if body is None else json.dumps(body).encode(),
            method=method or ("GET" if body is None else "POST"),
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def set_slow_polls(self, polls: int) -> None:
        self.assertEqual(self.control("/understudy/slow-polls", {"polls": polls}), (200, {"polls": polls}))


class SharedStackTestCase(StackTestCase):
    """Test classes that leave each other alone (own identifiers, own settings in setUp)
    share one stack per test run: a launcher start and moto's first RDS import cost
    seconds each. It is stopped, and checked, when the test process exits."""

    _shared: Stack | None = None

    @classmethod
    def setUpClass(cls) -> None:
        if SharedStackTestCase._shared is None:
            SharedStackTestCase._shared = Stack()
            atexit.register(SharedStackTestCase._shared.stop)
        cls.use_stack(SharedStackTestCase._shared)

    @classmethod
    def tearDownClass(cls) -> None:
        pass


class LocalStackTest(StackTestCase):

    def test_prints_the_contract(self) -> None:
        self.assertEqual(self.exports["UNDERSTUDY_STACK_PID"], str(self.stack.pid))
        self.assertEqual(Path(self.exports["UNDERSTUDY_LOG_DIR"]), self.tmp / "logs")
        self.assertRegex(self.moto_endpoint, r"^http://127\.0\.0\.1:\d+$")
        self.assertRegex(self.invoke_endpoint, r"^http://127\.0\.0\.1:\d+$")

    def test_success_answers_the_payload(self) -> None:
        started_ms = time.time() * 1000
        status, headers, body = self.invoke("echo", {"hello": "world"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-Amz-Executed-Version"], "$LATEST")
        self.assertNotIn("X-Amz-Function-Error", headers)
        self.assertEqual(body["event"], {"hello": "world"})
        self.assertEqual(body["context"]["request_id"], headers["x-amzn-RequestId"])
        self.assertEqual(body["context"]["invoked_function_arn"], FUNCTION_ARN + "echo")
        # The template gives echo the Globals timeout: 3 s.
        self.assertAlmostEqual(body["context"]["deadline_ms"] - started_ms, 3000, delta=1000)

    def test_function_error_is_unhandled_with_the_posted_error(self) -> None:
        status, headers, body = self.invoke("fail")
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-Amz-Function-Error"], "Unhandled")
        self.assertEqual(
            body, {"errorType": "SourceNotFound", "errorMessage": "DBCluster prod not found", "stackTrace": []}
        )

    def test_crash_is_a_runtime_exit_error(self) -> None:
        status, headers, body = self.invoke("crash")
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-Amz-Function-Error"], "Unhandled")
        self.assertEqual(body, {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {headers['x-amzn-RequestId']} Error: "
                            "Runtime exited with error: signal: aborted (core dumped)",
        })

    def test_timeout_kills_the_instance(self) -> None:
        started = time.monotonic()
        status, headers, body = self.invoke("slow")
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-Amz-Function-Error"], "Unhandled")
        self.assertEqual(body, {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {headers['x-amzn-RequestId']} Error: Task timed out after 1.00 seconds",
        })

    def test_init_error_is_unhandled_with_the_posted_error(self) -> None:
        status, headers, body = self.invoke("initfail")
        self.assertEqual((status, headers["X-Amz-Function-Error"]), (200, "Unhandled"))
        self.assertEqual(body["errorType"], "ConfigMissing")

    def test_unknown_function_is_not_found(self) -> None:
        status, headers, body = self.invoke("nope")
        self.assertEqual(status, 404)
        self.assertEqual(headers["x-amzn-ErrorType"], "ResourceNotFoundException")
        self.assertEqual(body, {"Type": "User", "message": f"Function not found: {FUNCTION_ARN}nope"})

    def test_url_encoded_arn_with_qualifier_names_the_function(self) -> None:
        encoded = urllib.request.quote(FUNCTION_ARN + "echo:live", safe="")
        self.assertIn("%3A", encoded)
        status, _, body = self.invoke(encoded, {"n": 1})
        self.assertEqual((status, body["event"]), (200, {"n": 1}))

    def test_environment_comes_from_the_template_and_the_launcher(self) -> None:
        env = self.invoke("echo")[2]["env"]
        expected = {
            "AWS_LAMBDA_FUNCTION_NAME": "echo",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/echo",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            "TEMPLATE_SETTING": "literal",
            "RETRIES": "3",
            "DRY_RUN": "false",
            "GLOBAL_SETTING": "from-globals",
            "UNDERSTUDY_TEST_MARKER": "passed-through",
            # Intrinsics resolved as CloudFormation would, from the parameter's default
            # (the stack deploys the template's defaults when it starts).
            "DEPLOYED_NAME": "understudy-test",
            "TABLE": "test",
        }
        self.assertEqual({key: env.get(key) for key in expected}, expected)
        for absent in ("AWS_SESSION_TOKEN",):
            self.assertNotIn(absent, env)
        self.assertTrue(env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:"))

    def test_a_deployment_resolves_parameters_and_refuses_what_cloudformation_would(self) -> None:
        status, deployed = self.control("/understudy/deploy", {"parameters": {"Environment": "qa"}})
        try:
            self.assertEqual(status, 200, deployed)
            env = self.invoke("echo")[2]["env"]
            self.assertEqual((env["DEPLOYED_NAME"], env["TABLE"]), ("understudy-qa", "qa"))
        finally:
            self.assertEqual(self.control("/understudy/deploy", {"parameters": {}})[0], 200)
        status, refused = self.control("/understudy/deploy", {"parameters": {"Colour": "blue"}})
        self.assertEqual(status, 400, refused)
        self.assertIn("Colour", refused["message"])

    def test_instances_stay_warm_and_run_in_parallel(self) -> None:
        first = self.invoke("echo")[2]["pid"]
        self.assertEqual(self.invoke("echo")[2]["pid"], first)
        with ThreadPoolExecutor(3) as pool:
            pids = list(pool.map(lambda _: self.invoke("echo", {"sleep": 0.5})[2]["pid"], range(3)))
        self.assertEqual(len(set(pids)), 3)

    def test_rds_cluster_snapshot_is_creating_for_the_slow_polls(self) -> None:
        rds = self.client("rds")
        rds.create_db_cluster(
            DBClusterIdentifier="snap-source", Engine="aurora-postgresql",
            MasterUsername="admin", MasterUserPassword="not-a-secret-1",
        )
        statuses = [
            rds.describe_db_clusters(DBClusterIdentifier="snap-source")["DBClusters"][0]["Status"]
            for _ in range(3)
        ]
        self.assertEqual(statuses, ["creating", "creating", "available"])
        created = rds.create_db_cluster_snapshot(
            DBClusterIdentifier="snap-source", DBClusterSnapshotIdentifier="snap-1",
        )["DBClusterSnapshot"]
        self.assertEqual(created["Status"], "creating")
        with self.assertRaises(rds.exceptions.InvalidDBClusterSnapshotStateFault):
            rds.restore_db_cluster_from_snapshot(
                DBClusterIdentifier="snap-early", SnapshotIdentifier="snap-1", Engine="aurora-postgresql"
            )
        seen = []
        for _ in range(3):
            snapshot = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="snap-1")["DBClusterSnapshots"][0]
            seen.append((snapshot["Status"], snapshot["PercentProgress"]))
        self.assertEqual([status for status, _ in seen], ["creating", "creating", "available"])
        progress = [percent for _, percent in seen]
        self.assertEqual(progress, sorted(progress))
        self.assertEqual(progress[-1], 100)

    def test_ecs_service_reaches_desired_count_after_the_slow_polls(self) -> None:
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName="scaling")
        ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}])
        ecs.create_service(cluster="scaling", serviceName="web", taskDefinition="web", desiredCount=2)
        seen = []
        for _ in range(3):
            service = ecs.describe_services(cluster="scaling", services=["web"])["services"][0]
            seen.append((service["runningCount"], service["pendingCount"]))
        self.assertEqual(seen, [(0, 2), (0, 2), (2, 0)])

    def test_slow_polls_can_change_at_run_time(self) -> None:
        rds = self.client("rds")
        self.set_slow_polls(0)
        try:
            rds.create_db_cluster(
                DBClusterIdentifier="instant", Engine="aurora-postgresql",
                MasterUsername="admin", MasterUserPassword="not-a-secret-1",
            )
            snapshot = rds.create_db_cluster_snapshot(
                DBClusterIdentifier="instant", DBClusterSnapshotIdentifier="instant-1"
            )["DBClusterSnapshot"]
            self.assertEqual(snapshot["Status"], "available")
        finally:
            self.set_slow_polls(2)

    def test_state_machine_invokes_the_functions(self) -> None:
        sfn = self.client("stepfunctions")
        definition = {
            "StartAt": "Echo",
            "States": {
                "Echo": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": FUNCTION_ARN + "echo", "Payload.$": "$"},
                    "ResultSelector": {"event.$": "$.Payload.event"},
                    "ResultPath": "$.echo",
                    "Next": "Fail",
                },
                "Fail": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "fail", "Payload": {}},
                    "Catch": [{"ErrorEquals": ["SourceNotFound"], "ResultPath": "$.caught", "Next": "Done"}],
                    "Next": "NotCaught",
                },
                "NotCaught": {"Type": "Fail", "Error": "NotCaught"},
                "Done": {"Type": "Succeed"},
            },
        }
        machine = sfn.create_state_machine(
            name="invokes", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        # Named: moto 5.2.5 reuses the name None for every unnamed execution.
        execution = sfn.start_execution(stateMachineArn=machine, name="invokes-1", input='{"n": 7}')["executionArn"]
        deadline = time.monotonic() + 20
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            self.assertLess(time.monotonic(), deadline, "execution still running")
            time.sleep(0.1)
        self.assertEqual(described["status"], "SUCCEEDED", described.get("cause"))
        output = json.loads(described["output"])
        self.assertEqual(output["echo"], {"event": {"n": 7}})
        self.assertEqual(output["caught"]["Error"], "SourceNotFound")


class ExitWithParentTest(unittest.TestCase):
    def test_stack_and_functions_end_when_the_parent_is_killed(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="understudy-stack-test-"))
        build_fixture_binaries(tmp / "bin")
        # A shell stands in for the test harness that started the stack.
        parent = subprocess.Popen(
            ["sh", "-c", '"$@" & wait', "sh", *stack_command(tmp, "--exit-with-parent")],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            exports = read_exports(parent.stdout)
            stack_pid = int(exports["UNDERSTUDY_STACK_PID"])
            invoke = urllib.request.Request(
                f"{exports['UNDERSTUDY_INVOKE_ENDPOINT']}/2015-03-31/functions/echo/invocations",
                data=b"{}", method="POST",
            )
            urllib.request.urlopen(invoke, timeout=10).close()
            parent.kill()
            parent.wait()
            self.assertEqual(wait_until_gone([stack_pid]), [])
            self.assertEqual(wait_until_gone(instance_pids(tmp / "logs")), [])
        finally:
            parent.kill()
            parent.stdout.close()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
