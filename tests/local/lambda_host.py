"""A Lambda Invoke API host that runs the real function binaries behind the Lambda
Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) and
answers as AWS Lambda does, function errors included."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import resource
import secrets
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sam_template import FunctionSettings

ACCOUNT_ID = "123456789012"
# A cold start's Init phase gets up to 10 s on AWS, outside the function's own timeout.
INIT_TIMEOUT_S = 10.0
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
RUNTIME_PREFIX = "/2018-06-01/runtime"
_RESULT_PATH = re.compile(rf"^{RUNTIME_PREFIX}/invocation/([^/]+)/(response|error)$")
# The launcher's own variables that reach the functions, so tests can steer them.
PASS_THROUGH_PREFIXES = ("UNDERSTUDY_", "RUST_LOG", "RUST_BACKTRACE")

# Exit wording of Go's os.ProcessState, which AWS's runtime manager reports verbatim.
# Signals whose default action dumps core are reported "(core dumped)" on AWS.
_SIGNAL_NAMES = {
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGQUIT: "quit",
    signal.SIGILL: "illegal instruction",
    signal.SIGTRAP: "trace/breakpoint trap",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGKILL: "killed",
    signal.SIGUSR1: "user defined signal 1",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGUSR2: "user defined signal 2",
    signal.SIGPIPE: "broken pipe",
    signal.SIGALRM: "alarm clock",
    signal.SIGTERM: "terminated",
}
_CORE_SIGNALS = {
    signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT,
    signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV, signal.SIGSYS,
}

log = logging.getLogger("understudy.lambda")


def function_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"


def function_name(identifier: str) -> str:
    """`name`, `name:qualifier`, `123456789012:function:name[:qualifier]` or a full ARN → `name`."""
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    return identifier.split(":", 1)[0]


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    binary: Path
    settings: FunctionSettings


def discover_functions(
    functions_dir: Path, bin_dir: Path, settings: dict[str, FunctionSettings]
) -> list[FunctionConfig]:
    """One function per directory of functions_dir, run from the binary of the same name."""
    return [
        FunctionConfig(entry.name, bin_dir / entry.name, settings.get(entry.name, FunctionSettings()))
        for entry in sorted(functions_dir.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    ]


@dataclass(frozen=True)
class Outcome:
    payload: bytes
    unhandled: bool = False  # answered with X-Amz-Function-Error: Unhandled
    fatal: bool = False  # the instance must not serve another invocation


def _error_outcome(error_type: str, message: str, fatal: bool) -> Outcome:
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return Outcome(body, unhandled=True, fatal=fatal)


def _posted_error(request: Request, fatal: bool) -> Outcome:
    """AWS hands on the error the runtime posted, reduced to its documented fields."""
    try:
        posted = json.loads(request.get_data())
    except ValueError:
        posted = None
    if not isinstance(posted, dict):
        posted = {"errorMessage": request.get_data(as_text=True)}
    error = {
        "errorType": posted.get("errorType")
        or request.headers.get("Lambda-Runtime-Function-Error-Type")
        or "Runtime.Unknown",
        "errorMessage": posted.get("errorMessage", ""),
    }
    if "stackTrace" in posted:
        error["stackTrace"] = posted["stackTrace"]
    return Outcome(json.dumps(error).encode(), unhandled=True, fatal=fatal)


def _exit_outcome(request_id: str, returncode: int) -> Outcome:
    if returncode == 0:
        detail = "Runtime exited without providing a reason"
    elif returncode > 0:
        detail = f"Runtime exited with error: exit status {returncode}"
    else:
        number = -returncode
        name = _SIGNAL_NAMES.get(number, f"signal {number}")
        core = " (core dumped)" if number in _CORE_SIGNALS else ""
        detail = f"Runtime exited with error: signal: {name}{core}"
    return _error_outcome("Runtime.ExitError", f"RequestId: {request_id} Error: {detail}", fatal=True)


def _json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers, content_type="application/json")


class Invocation:
    """One event's trip through an instance. The first outcome reported wins, so a
    crash, a timeout and a late response cannot overwrite one another."""

    def __init__(self, payload: bytes, timeout: float):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.timeout = timeout
        self.deadline: float | None = None  # monotonic; set once the runtime took the event
        self.outcome: Outcome | None = None
        self._changed = threading.Condition()

    def deliver(self) -> int:
        """Starts the clock; returns the deadline as the runtime sees it (epoch ms)."""
        with self._changed:
            self.deadline = time.monotonic() + self.timeout
            self._changed.notify_all()
        return int((time.time() + self.timeout) * 1000)

    def finish(self, outcome: Outcome) -> Outcome:
        with self._changed:
            if self.outcome is None:
                self.outcome = outcome
                self._changed.notify_all()
            return self.outcome

    def wait(self) -> Outcome | None:
        """The outcome, or None once the deadline (or, before the runtime took the
        event, the init allowance) has passed."""
        with self._changed:
            init_limit = time.monotonic() + INIT_TIMEOUT_S
            while self.outcome is None:
                limit = self.deadline if self.deadline is not None else init_limit
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
            return self.outcome


class Instance:
    """One function process and a Runtime API endpoint that only it talks to."""

    def __init__(self, config: FunctionConfig, env: dict[str, str], log_path: Path, region: str):
        self.config = config
        self._arn = function_arn(region, config.name)
        self._events: queue.Queue[Invocation | None] = queue.Queue()
        self._lock = threading.Lock()
        self._invocation: Invocation | None = None
        self._returncode: int | None = None  # set once the process has ended
        self.generation = 0  # the deployment it was started for
        self._killed = False
        self._server = make_server("127.0.0.1", 0, self._runtime_api, threaded=True)
        stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"
        env = env | {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._server.server_port}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        }
        try:
            with open(log_path, "ab") as log_file:
                log_file.write(f"=== {stream}: starting {config.binary}\n".encode())
                log_file.flush()
                # Own session: a Ctrl-C meant for the launcher must not hit the functions.
                self.process = subprocess.Popen(
                    [str(config.binary)], env=env, stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                )
        except OSError:
            self._server.server_close()
            raise
        # A function that aborts (a Rust panic with panic=abort) must not leave core files.
        with contextlib.suppress(ProcessLookupError):
            resource.prlimit(self.process.pid, resource.RLIMIT_CORE, (0, 0))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()
        log.info("%s: started instance pid %d", config.name, self.process.pid)

    @property
    def usable(self) -> bool:
        with self._lock:
            return self._returncode is None and not self._killed

    def invoke(self, invocation: Invocation) -> Outcome:
        with self._lock:
            self._invocation = invocation
            returncode = self._returncode
        if returncode is None:
            self._events.put(invocation)
        else:  # ended before it could take the event, and after _watch looked
            invocation.finish(_exit_outcome(invocation.request_id, returncode))
        outcome = invocation.wait()
        if outcome is None:
            outcome = invocation.finish(_error_outcome(
                "Sandbox.Timedout",
                f"RequestId: {invocation.request_id} Error: "
                f"Task timed out after {invocation.timeout:.2f} seconds",
                fatal=True,
            ))
        with self._lock:
            self._invocation = None
        if outcome.fatal:
            self.kill()
        return outcome

    def kill(self) -> None:
        with self._lock:
            self._killed = True
        self.process.kill()  # a no-op once the process has been reaped

    def _watch(self) -> None:
        returncode = self.process.wait()
        log.info("%s: instance pid %d exited (%d)", self.config.name, self.process.pid, returncode)
        with self._lock:
            self._returncode = returncode
            invocation = self._invocation
        if invocation is not None:
            invocation.finish(_exit_outcome(invocation.request_id, returncode))
        self._events.put(None)  # releases a /next request still waiting
        self._server.shutdown()
        self._server.server_close()

    def _runtime_api(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == f"{RUNTIME_PREFIX}/invocation/next":
            response = self._next_event()
        elif request.path == f"{RUNTIME_PREFIX}/init/error":
            response = self._report(None, _posted_error(request, fatal=True))
        elif match := _RESULT_PATH.match(request.path):
            request_id, kind = match.groups()
            if kind == "response":
                outcome = Outcome(request.get_data())
            else:
                outcome = _posted_error(request, fatal=False)
            response = self._report(request_id, outcome)
        else:
            response = _json_response(
                {"errorType": "InvalidRequest", "errorMessage": f"no route {request.path}"}, 404
            )
        return response(environ, start_response)

    def _next_event(self) -> Response:
        invocation = self._events.get()
        if invocation is None:
            return _json_response({"errorType": "Shutdown", "errorMessage": "instance ended"}, 410)
        deadline_ms = invocation.deliver()
        trace_id = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Sampled=0"
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self._arn,
            "Lambda-Runtime-Trace-Id": trace_id,
        }
        return Response(invocation.payload, 200, headers, content_type="application/json")

    def _report(self, request_id: str | None, outcome: Outcome) -> Response:
        """Hands a result to the invocation in flight; request_id None is an init error."""
        with self._lock:
            invocation = self._invocation
        if invocation is None or (
            request_id is not None
            and (request_id != invocation.request_id or invocation.deadline is None)
        ):
            return _json_response(
                {"errorType": "InvalidRequestID", "errorMessage": f"unknown request {request_id}"}, 400
            )
        invocation.finish(outcome)
        return _json_response({"status": "OK"}, 202)


class Function:
    """A function's instances: an invocation takes an idle one or starts another, so
    concurrent invocations (a Map state) run in parallel and warm ones are reused."""

    def __init__(self, config: FunctionConfig, env: dict[str, str], log_dir: Path, region: str):
        self.config = config
        self._env = env
        self._log_path = log_dir / f"{config.name}.log"
        self._region = region
        self._lock = threading.Lock()
        self._idle: list[Instance] = []
        self._instances: set[Instance] = set()
        self._generation = 0  # instances of an older deployment are not reused

    def redeploy(self, config: FunctionConfig, env: dict[str, str]) -> None:
        """New settings, as an UpdateFunctionConfiguration: idle instances end, busy
        ones finish their invocation and end; later invocations start fresh ones."""
        with self._lock:
            self.config = config
            self._env = env
            self._generation += 1
            idle, self._idle = self._idle, []
            for instance in idle:
                self._instances.discard(instance)
        for instance in idle:
            instance.kill()

    def invoke(self, payload: bytes) -> tuple[str, Outcome]:
        with self._lock:
            config, env, generation = self.config, self._env, self._generation
        invocation = Invocation(payload, config.settings.timeout)
        instance = self._take_idle()
        if instance is None:
            try:
                instance = Instance(config, env, self._log_path, self._region)
                instance.generation = generation
            except OSError as error:
                log.error("%s: cannot start %s (%s); is it built?", self.config.name,
                          self.config.binary, error.strerror)
                return invocation.request_id, _error_outcome(
                    "Runtime.InvalidEntrypoint",
                    f"RequestId: {invocation.request_id} Error: fork/exec "
                    f"{self.config.binary}: {(error.strerror or str(error)).lower()}",
                    fatal=True,
                )
            with self._lock:
                self._instances.add(instance)
        started = time.monotonic()
        outcome = instance.invoke(invocation)
        log.info("%s: %s %s in %.0f ms", self.config.name, invocation.request_id,
                 json.loads(outcome.payload).get("errorType", "error") if outcome.unhandled else "ok",
                 (time.monotonic() - started) * 1000)
        with self._lock:
            current = instance.generation == self._generation
            if instance.usable and current:
                self._idle.append(instance)
            else:
                self._instances.discard(instance)
        if not current:
            instance.kill()
        return invocation.request_id, outcome

    def _take_idle(self) -> Instance | None:
        with self._lock:
            while self._idle:
                instance = self._idle.pop()
                if instance.usable:
                    return instance
                self._instances.discard(instance)
        return None

    def close(self) -> None:
        with self._lock:
            instances = list(self._instances)
        for instance in instances:
            instance.kill()
        for instance in instances:
            try:
                instance.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("%s: pid %d did not die", self.config.name, instance.process.pid)


def function_env(config: FunctionConfig, region: str, moto_endpoint: str) -> dict[str, str]:
    """The environment of a function process: a clean one, as on AWS (nothing of the
    developer's ~/.aws or credentials leaks in), plus test pass-through variables."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "TZ": ":UTC"}
    env |= config.settings.env
    env |= {key: value for key, value in os.environ.items() if key.startswith(PASS_THROUGH_PREFIXES)}
    # Last, so nothing overrides them: AWS reserves these names.
    env |= {
        "AWS_LAMBDA_FUNCTION_NAME": config.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.settings.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    env.pop("AWS_SESSION_TOKEN", None)
    return env


class InvokeHost:
    """WSGI app serving POST /2015-03-31/functions/{name-or-ARN}/invocations."""

    def __init__(self, configs: list[FunctionConfig], region: str, moto_endpoint: str, log_dir: Path):
        self.region = region
        self.moto_endpoint = moto_endpoint
        self.functions = {
            config.name: Function(config, function_env(config, region, moto_endpoint), log_dir, region)
            for config in configs
        }
        self.absent: frozenset[str] = frozenset()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        return self._invoke(Request(environ))(environ, start_response)

    def _invoke(self, request: Request) -> Response:
        match = INVOKE_PATH.match(request.path)
        if match is None or request.method != "POST":
            return _json_response({"message": f"no route {request.method} {request.path}"}, 404)
        # An ARN given as FunctionName arrives percent-encoded in the path.
        name = function_name(unquote(match[1]))
        function = self.functions.get(name)
        if function is None or name in self.absent:
            return _json_response(
                {"Type": "User", "message": f"Function not found: {function_arn(self.region, name)}"},
                404,
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        payload = request.get_data()
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "DryRun":
            return Response(status=204)
        if invocation_type == "Event":
            threading.Thread(target=function.invoke, args=(payload,), daemon=True).start()
            return Response(status=202)
        request_id, outcome = function.invoke(payload)
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
        if outcome.unhandled:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return Response(outcome.payload, 200, headers, content_type="application/json")

    def redeploy(self, settings: dict[str, FunctionSettings], absent: Iterable[str] = ()) -> None:
        """Every function with the settings of a new deployment; the `absent` ones (a
        Condition left them out) answer ResourceNotFoundException, as Lambda would."""
        self.absent = frozenset(absent)
        for name, function in self.functions.items():
            config = FunctionConfig(name, function.config.binary, settings.get(name, FunctionSettings()))
            function.redeploy(config, function_env(config, self.region, self.moto_endpoint))

    def close(self) -> None:
        for function in self.functions.values():
            function.close()
