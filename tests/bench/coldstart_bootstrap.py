"""A minimal Lambda runtime loop for Python, as the Lambda Python runtime's bootstrap
runs one: import the handler module named by _HANDLER (`module.function`) from
LAMBDA_TASK_ROOT, which does the function's init work (the peer builds its boto3
clients there), then poll the Runtime API's /invocation/next and post each result to
/invocation/<id>/response, or the exception to /invocation/<id>/error. An import that
fails is posted to /init/error and the process exits, as the real runtime does.

Stdlib only, so it adds less to the peer's start than awslambdaric does: the figures
it gives Python are, if anything, flattering. `make bench-coldstart` starts it through
an executable bootstrap whose shebang is the bench venv's python.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

RUNTIME = "/2018-06-01/runtime"


class Context:
    """The handler's `context`, from /next's headers (the fields the real runtime gives)."""

    def __init__(self, headers: http.client.HTTPMessage):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0") or 0)
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _error_body(error: BaseException) -> bytes:
    return json.dumps({
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }).encode()


def _post(connection: http.client.HTTPConnection, path: str, body: bytes, error: bool = False) -> None:
    headers = {"Content-Type": "application/json"}
    if error:
        headers["Lambda-Runtime-Function-Error-Type"] = "Unhandled"
    connection.request("POST", path, body, headers)
    connection.getresponse().read()


def main() -> int:
    connection = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "."))
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:  # noqa: BLE001 - any init failure is reported, as on AWS
        _post(connection, f"{RUNTIME}/init/error", _error_body(error), error=True)
        return 1
    while True:
        connection.request("GET", f"{RUNTIME}/invocation/next")
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:  # the host is done with this instance
            return 0
        context = Context(response.headers)
        try:
            result: Any = handler(json.loads(payload), context)
        except Exception as error:  # noqa: BLE001 - the handler's exceptions are its errors
            _post(connection, f"{RUNTIME}/invocation/{context.aws_request_id}/error", _error_body(error), error=True)
        else:
            _post(connection, f"{RUNTIME}/invocation/{context.aws_request_id}/response", json.dumps(result).encode())


if __name__ == "__main__":
    sys.exit(main())
