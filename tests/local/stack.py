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
- **Lifecycle events** (events.py): `POST /understudy/events/subscribe {"name", "bus"?,
  "pattern"?}` makes an SQS queue and an EventBridge rule on the bus targeting it;
  `POST /understudy/events/receive {"queue_url"}` drains it, so a test reads what the
  machines published as a subscriber would.
- **Deployment** (deploy.py): `POST /understudy/deploy {"parameters": {...}}` resolves the
  template's intrinsics with those parameters (CloudFormation's checks first), gives every
  function the resulting environment, and creates the stack's versioned ConfigBucket. The
  template's defaults are deployed at start.
- **Slow transitions**: snapshots, copies, restores, database starts and stops, and
  ECS service scaling show their transitional state ("creating", runningCount below
  desiredCount, ...) for N describe calls before the final one, so wait loops are
  really exercised. `--slow-polls 0` makes them instant; at run time
  `POST /understudy/slow-polls {"polls": N}` on the invoke host changes N for
  transitions started afterwards (GET reads it). Renames (`renaming`) use the same N.
- **Fidelity patches** (rds_fidelity.py, sfn_fidelity.py, events_fidelity.py): moto
  5.2.5 is laxer than AWS where the refresh depends on AWS's rules; these patches make
  it as strict as AWS, never looser (and deliver what AWS delivers, below):
  - A Copy*/Restore* source may be another account's snapshot, named by its ARN, once
    that account shared it (`restore` attribute with the caller's account id or
    `all`); otherwise, and for another account's snapshot named without its ARN,
    DBClusterSnapshotNotFoundFault / DBSnapshotNotFound. The copy or restore carries
    the snapshot's engine, engine version, master user, password and encryption into
    the caller's account. (moto looked every ARN up in the caller's own account.)
  - StorageEncrypted without KmsKeyId encrypts with the account's AWS-managed
    `alias/aws/rds` key, created on first use with `KeyManager: AWS` (kms:DescribeKey
    shows it); snapshots inherit the key. A KmsKeyId (key id, key ARN, alias, alias
    ARN; another account's key ARN too) is stored as its key ARN and encrypts; one
    that does not exist, is disabled, or is another account's AWS-managed key is
    KMSKeyNotAccessibleFault (moto: a 500 for a missing alias).
  - Another account's snapshot encrypted with its AWS-managed key (aws/rds) can be
    shared, but its copy or restore fails with KMSKeyNotAccessibleFault. Copying an
    encrypted snapshot shared from another account needs a KmsKeyId
    (InvalidParameterValue without one); a KmsKeyId on the copy of an unencrypted
    cluster snapshot is InvalidParameterCombination.
  - Cluster identifiers (create, restore, rename) and new instance identifiers follow
    AWS's rule: 1 to 63 letters, digits or hyphens, a letter first, no trailing or
    double hyphen (InvalidParameterValue). A cluster cannot be created or restored
    under a name in use (DBClusterAlreadyExistsFault; moto replaced the cluster).
  - Renames (NewDBClusterIdentifier, NewDBInstanceIdentifier): onto a name in use,
    DBClusterAlreadyExistsFault / DBInstanceAlreadyExists; on a database that is not
    `available` (stopped, stopping, starting, creating, renaming...),
    InvalidDBClusterStateFault / InvalidDBInstanceState; without ApplyImmediately the
    rename waits for a maintenance window that never comes (PendingModifiedValues
    shows it). A rename shows `renaming` for the slow polls; the new identifier
    answers at once, the old one stays taken (create, restore, rename onto it:
    AlreadyExists) until the rename completes. A renamed cluster keeps its members
    (DBClusterMembers, and each instance's DBClusterIdentifier); moto lost them, and
    then let the cluster be deleted with its instances.
  - Stopping or starting an Aurora cluster stops or starts its instances too.
  - A managed master password (ManageMasterUserPassword) is random and its secret
    names the master user (moto: admin / P@55w0rd! everywhere). A snapshot keeps the
    master password, not its management: the restored database opens with it.
  - A database created under a name renamed away in the same minute no longer
    collides with moto's automated snapshot names.
  - A DB instance created (CreateDBInstance, a cluster's instances included), restored
    (RestoreDBInstanceFromDBSnapshot, RestoreDBInstanceToPointInTime) or replicated
    (CreateDBInstanceReadReplica) without PubliclyAccessible is publicly accessible
    (`PubliclyAccessible: true`): the pessimistic reading of AWS's defaults (public in
    a default VPC or a VPC with an internet gateway; public without a subnet group, or
    with the `default` one), the emulator knowing no gateways, so Aurora instances and
    custom subnet groups too. An explicit PubliclyAccessible is kept, false included.
    (moto left it unset, and a restore or replica kept its source's, ignoring an
    explicit false.)
  ModifyDBCluster on a missing cluster is DBClusterNotFoundFault (moto: a 500).
  In Step Functions (sfn_fidelity.py), a Retry's or Catch's `States.ALL` matches neither
  `States.Runtime` (a JSONPath missing from the input in Parameters, ResultSelector,
  ...) nor `States.DataLimitExceeded`: the execution fails with that error. A
  `States.Runtime` is never retried nor caught, even by a retrier or catcher naming it;
  `States.DataLimitExceeded` is caught only by one naming it. (moto's States.ALL matched
  every error.)
  In EventBridge (events_fidelity.py), where moto delivers only to logs, archives, SQS,
  buses and API destinations (a Lambda or SNS target made PutEvents a 500), and its
  Step Functions engine put no events:
  - A rule's Lambda target (`arn:aws:lambda:...:function:<name>[:<qualifier>]`) is
    invoked asynchronously, as EventBridge does: PutEvents answers at once, the function
    runs on the invoke host in the background with the event (or the target's Input,
    InputPath or InputTransformer applied) as payload. A function error is attempted 3
    times (Lambda's two asynchronous retries, 0.2 s apart here); an unknown function is
    a failed delivery, not retried. `GET /understudy/events/deliveries` answers
    `{"deliveries": [{"rule", "function", "status": "pending" | "succeeded" | "failed",
    "attempts", "answer", "error"}]}` in delivery order (`answer`: the function's last
    answer parsed as JSON, its error document for a function error, else null; `error`:
    its errorType, `ResourceNotFoundException`, or null); `POST {}` clears them.
  - A rule's SNS target (`arn:aws:sns:<region>:<account>:<topic>`) publishes the
    (transformed) event to the topic through moto's SNS, so its subscriptions (SQS
    queues) receive it; a missing topic drops the event.
  - Standard workflows' executions put `Step Functions Execution Status Change` events
    (source `aws.states`, resources `[executionArn]`) on their account's and Region's
    default bus: RUNNING at the start, then exactly one of SUCCEEDED, FAILED, TIMED_OUT
    or ABORTED (StopExecution included), with detail `{"executionArn",
    "stateMachineArn", "name", "status", "startDate", "stopDate" (epoch ms or null),
    "input", "inputDetails", "output", "outputDetails", "error", "cause"}`; rules on
    the bus (SQS, Lambda, SNS targets) see them.
- **Fault injection**: `POST /understudy/faults` on the invoke host with
  `{"service": "rds", "action": "ModifyDBCluster", "code": "InternalFailure",
  "account": "123456789012", "identifier": "staging-db", "nth": 2, "times": 1,
  "status": 500, "message": "..."}` makes matching AWS calls fail with that error
  before moto handles them (moto never sees them). Only service, action and code are
  required. `service` is the botocore name (rds, s3, stepfunctions, ...) or the
  signing name / IAM prefix (states, tagging, ...); `action` the API operation;
  `account` (the account moto acts in) and `identifier` (one of the call's
  `identifiers` as recorded, below: a batched call naming it matches) narrow the
  match. The `nth` matching call from now fails (default 1), and the `times - 1`
  matching calls after it (default 1); every matching call counts, failed or not.
  `status` defaults to the service model's status for that code (503 for
  ServiceUnavailable/SlowDown and EC2's RequestLimitExceeded, 500 for Internal*,
  else 400); `message` has a default.
  The error is in the service's wire format, serialized as moto serializes its own
  errors (Query XML `ErrorResponse` for rds, sts, autoscaling, ...; EC2's `Response`;
  JSON with `__type` and `x-amzn-ErrorType` for kms, secretsmanager, ecs,
  application-autoscaling, tagging, stepfunctions, ...; S3's XML `Error`; for a Smithy
  RPC v2 CBOR request, a CBOR `{"__type", "message"}` with `x-amzn-query-error`).
  The answer is the fault: `{"id", "service", "action", "code", "account",
  "identifier", "skip", "times", "status", "message"}` (`skip`: matching calls still
  let through). `GET` lists the pending faults (`{"faults": [...]}`),
  `DELETE` clears them; a fault goes once its `times` are used up.
- **Request recorder**: every AWS request reaching moto, on either port (the functions
  call moto's port; moto's Step Functions integrations come through the invoke host),
  is recorded; `GET /understudy/requests` answers `{"requests": [...]}` in arrival
  order, `DELETE` clears them. A record is `{"account", "service", "action",
  "mutating", "identifier", "identifiers", "status", "injected"}`: the account moto
  acts in (resolved from the access key as moto does: an sts:AssumeRole key acts in the
  role's account), the botocore service name (rds, s3, ecs, ec2, autoscaling,
  application-autoscaling, resourcegroupstaggingapi, cloudwatch, ...), the API
  operation (null if it cannot be told; Smithy RPC v2 CBOR requests, CloudWatch's from
  the Rust SDK, are told by their path), whether it mutates (not
  Describe*/List*/Get*/Head*/Check*/Lookup*, nor sts:AssumeRole / GetCallerIdentity;
  an unknown operation counts as mutating), the first of DBClusterIdentifier,
  DBInstanceIdentifier, snapshot identifiers (target before source), ResourceName,
  Bucket, SecretId, KeyId, ECS's service / serviceName / services / resourceArn /
  cluster, AutoScalingGroupName, Auto Scaling's Tags.member.N.ResourceId and
  AutoScalingGroupNames.member.N, Application Auto Scaling's ResourceId / ResourceIds,
  EC2's InstanceId.N and ResourceId.N, ... present in the request (or null; see
  traffic.IDENTIFIER_PARAMS); `identifiers` lists every resource that parameter names
  (a batched call: StopInstances, CreateTags, DescribeServices, ...), `identifier` is
  the first. Then the HTTP status answered, and the code of the injected fault (or
  null). Parameters are not recorded (passwords never are). moto's /moto-api is not
  recorded.
- **Staging's network** (a test fixture): `POST /understudy/seed/network {"account",
  "region", "subnet_group"}` creates a VPC, two subnets, a security group and a DB
  subnet group, answering their ids (see seed.py).
- **Password check**: `POST /understudy/rds/check-password` with `{"account":
  "123456789012", "region": "us-east-1", "kind": "cluster" | "instance", "identifier",
  "username", "password"}` (account and region default to staging's and the stack's)
  answers `{"ok": true|false}`: whether that master user and password open the
  database as moto stores it: the password set at create, restore (the snapshot's)
  or ModifyDB*, or, with ManageMasterUserPassword, the current value of the managed
  secret; an Aurora instance opens with its cluster's. 404 if the database does not
  exist, 400 for a malformed request.
- **Database status overrides** (rds_status.py): `POST /understudy/rds/status-override`
  with `{"account": "222222222222", "region": "us-east-1", "kind": "instance" |
  "cluster", "identifier_prefix": "staging-aurora-new-", "status":
  "incompatible-parameters"}` (account and region default to staging's and the stack's)
  makes DescribeDBInstances (`instance`: RDS instances and clusters' member instances)
  or DescribeDBClusters (`cluster`) show that status for every database of the kind in
  that account and Region whose identifier starts with the prefix (case-insensitively),
  existing now or created later. It answers the override, `{"id", "account", "region",
  "kind", "identifier_prefix", "status"}` (400 for a malformed request); `GET` answers
  `{"overrides": [...]}`, `DELETE` clears them all (`{"overrides": []}`). The last added
  of several matching overrides wins. Only describe responses change: other calls (and
  the fidelity patches' state checks) see the real status. The override wins over a
  transition held for the slow polls, which keeps counting its polls underneath and
  shows where it got to once the overrides are cleared.

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

import deploy  # noqa: E402
import events  # noqa: E402
import events_fidelity  # noqa: E402
import lambda_host  # noqa: E402
import rds_fidelity  # noqa: E402
import rds_status  # noqa: E402
import s3_faults  # noqa: E402
import s3_fidelity  # noqa: E402
import sam_template  # noqa: E402
import seed  # noqa: E402
import sfn_fidelity  # noqa: E402
import slow_transitions  # noqa: E402
import traffic  # noqa: E402


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
        # moto builds a service's app before serving its first request. The fidelity
        # patches go on last, so they run before the slow transitions' ones.
        slow_transitions.install_for(service)
        rds_fidelity.install_for(service)
        sfn_fidelity.install_for(service)
        events_fidelity.install_for(service)
        # Status overrides go outside everything: they change only what describes show.
        rds_status.install_for(service)
        return app

    # Object tags follow the object across accounts, as on AWS (see s3_fidelity.py).
    s3_fidelity.install()
    # What POST /moto-api/config does: execute state machine definitions.
    moto_api_backend.set_config({"stepfunctions": {"execute_state_machine": True}})
    # UNDERSTUDY_S3_SLOWDOWN_EVERY=N throttles every Nth S3 copy (see s3_faults.py).
    # Every AWS request moto serves, on either port, is recorded and may be failed.
    # (The interceptor reads moto's dispatcher, so the SlowDown wrapper goes outside it.)
    return s3_faults.wrap(traffic.Interceptor(DomainDispatcherApplication(create_app)))


def control_apps(region: str, deployer: deploy.Deployer, moto_endpoint: str = "") -> dict[str, Callable]:
    """The invoke host's /understudy/* endpoints, by path."""
    return {
        **events.events_app(lambda: moto_endpoint, region),
        "/understudy/events/deliveries": events_fidelity.deliveries_app,
        "/understudy/deploy": deployer.app,
        "/understudy/slow-polls": slow_transitions.control_app,
        "/understudy/faults": traffic.faults_app,
        "/understudy/requests": traffic.requests_app,
        "/understudy/rds/check-password": rds_fidelity.password_check_app(region),
        "/understudy/rds/status-override": rds_status.overrides_app(region),
        "/understudy/seed/network": seed.network_app(region),
    }


def invoke_app(host: lambda_host.InvokeHost, moto: Callable, controls: dict[str, Callable]) -> Callable:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if lambda_host.INVOKE_PATH.match(path):
            return host(environ, start_response)
        control = controls.get(path.rstrip("/"))
        if control is not None:
            return control(environ, start_response)
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
    # EventBridge rules' Lambda targets run on this host (before moto serves a request).
    events_fidelity.install(host)
    deployer = deploy.Deployer(args.template, host, args.region)
    invoke_server = make_server(
        "127.0.0.1", 0, invoke_app(host, moto, control_apps(args.region, deployer, moto_endpoint)), threaded=True,
        request_handler=MotoRequestHandler,
    )
    # moto's Step Functions engine sends lambda:invoke to localhost:MOTO_PORT.
    os.environ["MOTO_PORT"] = str(invoke_server.server_port)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    serve(moto_server)
    serve(invoke_server)
    try:
        deployer.deploy({})  # the template's defaults, until a test deploys its own
    except sam_template.TemplateError as error:
        logging.warning("not deployed with the template's defaults: %s", error)
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
