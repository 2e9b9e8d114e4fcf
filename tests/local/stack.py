"""understudy's local AWS stack: moto plus a Lambda Invoke API host running the real
function binaries, so state machines execute end to end on one machine, without
Docker or network.

Usage (from the repository root, after `cargo build`):

    .venv/bin/python tests/local/stack.py [--bin-dir target/debug] [--functions-dir functions]
        [--template infra/template.yaml] [--slow-polls 2] [--region us-east-1]
        [--log-dir DIR] [--exit-with-parent]

Once both servers listen it prints, and flushes, these lines (`eval`-able in a shell),
then runs until SIGTERM or SIGINT:

    export UNDERSTUDY_MOTO_ENDPOINT=http://127.0.0.1:<port>
    export UNDERSTUDY_INVOKE_ENDPOINT=http://127.0.0.1:<port>
    export UNDERSTUDY_STACK_PID=<pid>
    export UNDERSTUDY_LOG_DIR=<dir>
    # understudy local stack ready

What runs:

- **moto** (in process) at UNDERSTUDY_MOTO_ENDPOINT, with Step Functions executing
  state machines. moto's `arn:aws:states:::lambda:invoke` tasks (and its other
  integrations) call `http://localhost:$MOTO_PORT`; MOTO_PORT is set to the invoke
  host's port, which serves Lambda itself and hands every other request to the same
  moto, so those integrations keep working.
- **Lambda Invoke API** at UNDERSTUDY_INVOKE_ENDPOINT:
  `POST /2015-03-31/functions/{name or ARN, maybe URL-encoded}/invocations`.
  Every directory `<functions-dir>/<name>` is a function run from `<bin-dir>/<name>`,
  with the timeout, memory size and literal environment variables the SAM template
  gives it (AWS's defaults without a template: 3 s, 128 MB). Each instance is a
  process speaking the Lambda Runtime API to its own endpoint; idle instances stay
  warm, concurrent invocations get instances of their own. Answers are AWS's: 200
  with the payload; 200 with `X-Amz-Function-Error: Unhandled` and
  `{"errorType", "errorMessage"}` for a function error, a crash (`Runtime.ExitError`)
  or a timeout (`Sandbox.Timedout`); 404 `ResourceNotFoundException` for an unknown
  function. A crashed or timed-out instance is discarded.
  Function processes get a clean environment: AWS_REGION, AWS_ENDPOINT_URL (moto),
  credentials `testing`/`testing`, the AWS_LAMBDA_* variables, the template's
  variables, and the launcher's own UNDERSTUDY_*, RUST_LOG* and RUST_BACKTRACE*.
- **Slow transitions**: snapshots, copies, restores, database starts and stops, and
  ECS service scaling show their transitional state ("creating", runningCount below
  desiredCount, ...) for N describe calls before the final one, so wait loops are
  really exercised. `--slow-polls 0` makes them instant; at run time
  `POST /understudy/slow-polls {"polls": N}` on the invoke host changes N for
  transitions started afterwards (GET reads it).

Logs go to the log directory (a new temporary one by default, kept afterwards):
`<function>.log` holds each function's stdout and stderr, `stack.log` the launcher's.

`--exit-with-parent` makes the stack exit when its parent process dies (a test
harness killed with SIGKILL). Function processes also end by themselves when the
launcher disappears, since their Runtime API connection breaks.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

# Read before the slow imports below: a parent that dies while they run counts as gone.
PARENT_PID = os.getppid()

from moto.moto_api._internal.models import moto_api_backend  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server  # noqa: E402

import lambda_host  # noqa: E402
import s3_faults  # noqa: E402
import s3_fidelity  # noqa: E402
import sam_template  # noqa: E402
import slow_transitions  # noqa: E402

CONTROL_PATH = "/understudy/slow-polls"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="understudy's local AWS stack (moto + Lambda host)")
    parser.add_argument("--bin-dir", type=Path, default=Path("target/debug"))
    parser.add_argument("--functions-dir", type=Path, default=Path("functions"))
    parser.add_argument("--template", type=Path, default=Path("infra/template.yaml"))
    parser.add_argument("--slow-polls", type=int, default=2, metavar="N",
                        help="describe calls a transition stays visible for (0: instant)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit when the parent process dies")
    args = parser.parse_args(argv)
    if args.slow_polls < 0:
        parser.error("--slow-polls must be >= 0")
    if not args.functions_dir.is_dir():
        parser.error(f"--functions-dir {args.functions_dir} is not a directory")
    return args


def moto_app() -> Callable:
    def create_app(service: str) -> Any:
        app = create_backend_app(service)
        # moto builds a service's app before serving its first request.
        slow_transitions.install_for(service)
        return app

    # Object tags follow the object across accounts, as on AWS (see s3_fidelity.py).
    s3_fidelity.install()
    # What POST /moto-api/config does: execute state machine definitions.
    moto_api_backend.set_config({"stepfunctions": {"execute_state_machine": True}})
    # UNDERSTUDY_S3_SLOWDOWN_EVERY=N throttles every Nth S3 copy (see s3_faults.py).
    return s3_faults.wrap(DomainDispatcherApplication(create_app))


def invoke_app(host: lambda_host.InvokeHost, moto: DomainDispatcherApplication) -> Callable:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if lambda_host.INVOKE_PATH.match(path):
            return host(environ, start_response)
        if path == CONTROL_PATH:
            return slow_transitions.control_app(environ, start_response)
        # Step Functions' other integrations (s3:listObjectsV2 for a Distributed Map's
        # ItemReader, ...) also call localhost:MOTO_PORT.
        return moto(environ, start_response)

    return app


def serve(server: BaseWSGIServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="understudy-stack-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir.resolve()
    logging.basicConfig(
        filename=log_dir / "stack.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    settings = {}
    if args.template.is_file():
        settings = sam_template.function_settings(sam_template.load_template(args.template))
    configs = lambda_host.discover_functions(args.functions_dir, args.bin_dir.resolve(), settings)
    logging.info("functions: %s", ", ".join(config.name for config in configs) or "none")
    slow_transitions.set_polls(args.slow_polls)

    # Bind both ports first: each side needs the other's address.
    moto = moto_app()
    moto_server = make_server("127.0.0.1", 0, moto, threaded=True, request_handler=MotoRequestHandler)
    moto_endpoint = f"http://127.0.0.1:{moto_server.server_port}"
    host = lambda_host.InvokeHost(configs, args.region, moto_endpoint, log_dir)
    invoke_server = make_server(
        "127.0.0.1", 0, invoke_app(host, moto), threaded=True, request_handler=MotoRequestHandler
    )
    # moto's Step Functions engine sends lambda:invoke to localhost:MOTO_PORT.
    os.environ["MOTO_PORT"] = str(invoke_server.server_port)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    serve(moto_server)
    serve(invoke_server)
    print(
        f"export UNDERSTUDY_MOTO_ENDPOINT={moto_endpoint}\n"
        f"export UNDERSTUDY_INVOKE_ENDPOINT=http://127.0.0.1:{invoke_server.server_port}\n"
        f"export UNDERSTUDY_STACK_PID={os.getpid()}\n"
        f"export UNDERSTUDY_LOG_DIR={shlex.quote(str(log_dir))}\n"
        "# understudy local stack ready",
        flush=True,
    )

    while not stop.wait(0.5):
        if args.exit_with_parent and os.getppid() != PARENT_PID:
            logging.info("parent %d is gone", PARENT_PID)
            break
    logging.info("shutting down")
    invoke_server.shutdown()  # no new instances while the running ones are killed
    host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
