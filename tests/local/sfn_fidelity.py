"""Step Functions rules that moto 5.2.5's state machine engine (moto/stepfunctions/parser,
a port of LocalStack's ASL interpreter) does not enforce, made as strict as AWS.

Like rds_fidelity's patches, these wrap moto's classes (`_patch`: the replacement
receives the original first), are installed when moto first builds the Step Functions
app, and only ever make the emulator stricter.

- Terminal errors (`_patch_error_matching`). AWS, "Handling errors in Step Functions
  workflows" (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html),
  under Error names: `States.ALL` must appear alone in a Catcher and cannot catch the
  `States.DataLimitExceeded` terminal error or the `Runtime` error types;
  `States.DataLimitExceeded` is a terminal error that `States.ALL` cannot catch; and of
  `States.Runtime` (as the AWS CDK's aws-stepfunctions README also words it): "A
  `States.Runtime` error is not retriable, and will always cause the execution to fail.
  A retry or catch on `States.ALL` will NOT catch States.Runtime errors."
  So no retrier or catcher matches `States.Runtime`, not even one naming it; only one
  naming `States.DataLimitExceeded` matches that error; `States.ALL` (and
  `States.TaskFailed`) match neither. moto's `States.ALL` matched every error, so a
  JSONPath mistake (a `Parameters` or `ResultSelector` path missing from the input:
  States.Runtime) was retried, then routed to the catcher's Next state, where AWS fails
  the execution.
"""

from __future__ import annotations

from typing import Any, Callable

from slow_transitions import _patch

RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"

_installed = False


def install_for(service: str) -> None:
    """Patches moto's Step Functions engine when moto builds the Step Functions app."""
    global _installed
    if service == "stepfunctions" and not _installed:
        _installed = True
        _patch_error_matching()


def matches(error_name: str | None, error_equals: list[str], original: bool) -> bool:
    """Whether a retrier's or catcher's ErrorEquals matches the error, as on AWS:
    States.Runtime never, States.DataLimitExceeded only when named; any other error
    as moto decided (`original`)."""
    if error_name == RUNTIME:
        return False
    if error_name == DATA_LIMIT_EXCEEDED:
        return DATA_LIMIT_EXCEEDED in error_equals
    return original


def _patch_error_matching() -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl

    # Retriers and catchers both evaluate their ErrorEquals here: the error name on top
    # of the stack is replaced by whether it matches.
    @_patch(ErrorEqualsDecl, "_eval_body")
    def error_equals(original: Callable, decl: Any, env: Any) -> None:
        error_name = getattr(env.stack[-1], "error_name", None)
        original(decl, env)
        env.stack.append(matches(error_name, [name.error_name for name in decl.error_names], env.stack.pop()))
