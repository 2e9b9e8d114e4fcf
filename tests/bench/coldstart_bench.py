"""`make bench-coldstart`: each function's cold start against a Python + boto3 peer's.

Every function binary of `--bin-dir` (the release build `make bench-coldstart` makes:
the workspace's [profile.release], what Lambda gets, built for this host) is started
as the local stack starts it: tests/local/lambda_host.py's Instance (its Runtime API,
its process launch) with the environment its function_env gives, the stack parameters
resolved from infra/template.yaml as tests/local/deploy.py resolves them (for a
same-account stack, which deploys every function), and AWS_ENDPOINT_URL at a local
port that refuses connections, so no call can leave the machine. The event is queued
before the process starts, as for a cold start on AWS. Measured per start:

- ready: from the spawn (the Popen call) to the runtime's first
  GET /2018-06-01/runtime/invocation/next, by which time main has loaded the AWS
  config and built what it builds before lambda_runtime::run;
- first invoke: from handing out the event on /next to the response (or error) POST;
- peak RSS: VmHWM from /proc/<pid>/status once the runtime polls /next again after
  the first invocation, just before the process is killed.

Each function's first event needs no AWS: a request whose execution input names a
trust setting (`production.role_arn`), which every config-reading action refuses
with InvalidInput before any call; the mirror's `mirror` of a pair the stack does not
deploy (GuardRailViolation); the trigger's pipeline event for a pipeline the stack
does not follow (answered `ignored`). The answer is checked: another one means the
event took another path (a network call, a crash) and fails the run.

The peer is tests/bench/coldstart_peer.py, a handler that builds at import the boto3
clients the functions use (12; and a 7-client variant), run by a minimal Python
runtime loop (tests/bench/coldstart_bootstrap.py) behind the same Runtime API,
measured the same way, with the same refused request.

Every subject runs `--warmup` times unmeasured, then `--runs` times, interleaved
(round-robin), so a burst of load from elsewhere on the machine hits all of them;
figures are median [min-max]. Printed as a table with ours / peer's ratios and the
targets (ready <= 15 ms, peak RSS <= 20 MB, ready <= 0.05 x Python's, each flagged,
not failed), and written as JSON to `--output`. Exit status 1 when a function (or the
peer) fails to start or to answer as expected.

Usage (repository root, after the release build; python with werkzeug and PyYAML for
the local stack's modules, `--python` with boto3 for the peer):

    .venv/bin/python tests/bench/coldstart_bench.py --bin-dir target/release \\
        --python .bench-venv/bin/python [--runs 5] [--output .local/bench-coldstart.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "local"))
import deploy  # noqa: E402
import lambda_host  # noqa: E402
import sam_template  # noqa: E402

REGION = "us-east-1"
EVENTS = ROOT / "tests" / "events"
PEER_DIR = Path(__file__).resolve().parent
NEXT_PATH = f"{lambda_host.RUNTIME_PREFIX}/invocation/next"
RESULT_PATH = re.compile(rf"^{lambda_host.RUNTIME_PREFIX}/(invocation/[^/]+/(response|error)|init/error)$")
# How long a runtime gets to poll /next again after answering before it is stopped anyway.
POLL_AGAIN_TIMEOUT_S = 5.0

TARGET_READY_MS = 15.0
TARGET_RSS_BYTES = 20_000_000  # 20 MB
TARGET_READY_RATIO = 0.05

# A role in another account: a trust setting no execution input may name.
FOREIGN_ROLE = {"role_arn": "arn:aws:iam::999999999999:role/not-this-stacks"}
SEVEN_CLIENTS = ("rds", "s3", "sts", "stepfunctions", "ecs", "ec2", "autoscaling")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the first events -------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    error_type: str | None = None  # an error of this errorType, or else
    response: dict[str, Any] = field(default_factory=dict)  # a response with these fields

    def describe(self) -> str:
        if self.error_type:
            return f"error {self.error_type}"
        return "response " + ", ".join(f"{k}={v}" for k, v in self.response.items())

    def check(self, outcome: lambda_host.Outcome) -> tuple[bool, str]:
        """(as expected, what the answer was)."""
        try:
            body = json.loads(outcome.payload)
        except ValueError:
            body = None
        if outcome.unhandled:
            error_type = body.get("errorType") if isinstance(body, dict) else None
            message = body.get("errorMessage", "") if isinstance(body, dict) else ""
            answer = f"error {error_type}" + ("" if error_type == self.error_type else f": {message}")
            return error_type == self.error_type, answer
        if self.error_type or not isinstance(body, dict):
            return False, "response " + outcome.payload.decode(errors="replace")[:200]
        ok = all(body.get(k) == v for k, v in self.response.items())
        return ok, "response " + ", ".join(f"{k}={body.get(k)}" for k in self.response)


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def refused(name: str) -> dict[str, Any]:
    """The tests/events request with a foreign production role in its execution input:
    refused while the configuration is assembled, before any AWS call."""
    request = event(name)
    request["config"]["input"]["production"] = FOREIGN_ROLE
    return request


INVALID_INPUT = Expected(error_type="InvalidInput")
FIRST_EVENTS: dict[str, tuple[dict[str, Any], Expected]] = {
    "snapshot": (refused("snapshot-validate.json"), INVALID_INPUT),
    "share": (refused("share-status.json"), INVALID_INPUT),
    "restore": (refused("restore-check.json"), INVALID_INPUT),
    "scale-to-zero": (refused("scale-to-zero-validate.json"), INVALID_INPUT),
    "smoke-test": (refused("smoke-test-round.json"), INVALID_INPUT),
    # MirrorBuckets is empty by default: no pair may be written.
    "mirror": (event("mirror-start.json"), Expected(error_type="GuardRailViolation")),
    # ProductionPipelineName is empty by default: the stack follows no pipeline.
    "trigger": (event("trigger-pipeline-succeeded.json"), Expected(response={"outcome": "ignored"})),
}
PEER_EVENT = (refused("snapshot-validate.json"), INVALID_INPUT)


# --- starting and timing one instance ------------------------------------------------


class _SpawnClock:
    """lambda_host's view of the subprocess module: the same, but Popen notes when it
    was called, so `ready` starts at the spawn and not before the Runtime API's setup."""

    def __init__(self, module: Any):
        self._module = module
        self.last = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802 - the module's name
        self.last = time.perf_counter()
        return self._module.Popen(*args, **kwargs)


SPAWN_CLOCK = _SpawnClock(subprocess)
lambda_host.subprocess = SPAWN_CLOCK  # instances are started one at a time, from one thread


class TimedInstance(lambda_host.Instance):
    """lambda_host's Instance, noting when the runtime polls, takes its event and answers."""

    def __init__(self, config: lambda_host.FunctionConfig, env: dict[str, str], log_path: Path):
        self.polls: list[float] = []
        self.delivered_at: float | None = None
        self.answered_at: float | None = None
        self.polling_again = threading.Event()
        super().__init__(config, env, log_path, REGION)
        self.spawned_at = SPAWN_CLOCK.last

    def _runtime_api(self, environ: dict[str, Any], start_response: Any) -> Any:
        now = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        if path == NEXT_PATH:
            self.polls.append(now)
            if len(self.polls) > 1:
                self.polling_again.set()
        elif RESULT_PATH.match(path) and self.answered_at is None:
            self.answered_at = now
        return super()._runtime_api(environ, start_response)

    def _next_event(self) -> Any:
        response = super()._next_event()
        if response.status_code == 200 and self.delivered_at is None:
            self.delivered_at = time.perf_counter()
        return response


def vm_hwm_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match[1]) if match else None


@dataclass
class Subject:
    name: str
    label: str
    config: lambda_host.FunctionConfig
    env: dict[str, str]
    payload: bytes
    expected: Expected
    peer: bool = False
    samples: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def start_once(subject: Subject, log_dir: Path) -> dict[str, Any]:
    """One cold start and first invocation; the sample, with `error` when it failed."""
    instance = TimedInstance(subject.config, subject.env, log_dir / f"{subject.name}.log")
    hwm = None
    try:
        invocation = lambda_host.Invocation(subject.payload, subject.config.settings.timeout)
        outcome = instance.invoke(invocation)
        if not outcome.fatal:
            instance.polling_again.wait(POLL_AGAIN_TIMEOUT_S)
            hwm = vm_hwm_kib(instance.process.pid)
    finally:
        instance.kill()
        try:
            instance.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    ok, answer = subject.expected.check(outcome)
    sample: dict[str, Any] = {"answer": answer}
    if instance.polls:
        sample["ready_ms"] = (instance.polls[0] - instance.spawned_at) * 1000
    if instance.delivered_at is not None and instance.answered_at is not None:
        sample["first_invoke_ms"] = (instance.answered_at - instance.delivered_at) * 1000
    if hwm is not None:
        sample["peak_rss_mib"] = hwm / 1024
    if not ok:
        sample["error"] = f"answered {answer}, expected {subject.expected.describe()}"
    elif not instance.polling_again.is_set():
        sample["error"] = f"answered, but did not poll /next again within {POLL_AGAIN_TIMEOUT_S:.0f} s"
    elif hwm is None:
        sample["error"] = "no VmHWM: the process ended before it was measured"
    return sample


# --- the subjects ----------------------------------------------------------------------


# A same-account stack (ProductionAccountId is its own account): every function is
# deployed (the template's defaults alone leave out those that refresh).
DEPLOY_PARAMETERS = {"ProductionAccountId": lambda_host.ACCOUNT_ID}


def stack_settings(template: Path) -> tuple[dict[str, sam_template.FunctionSettings], set[str]]:
    """Each function's settings as the local stack deploys DEPLOY_PARAMETERS
    (tests/local/deploy.py), without the emulator: no buckets or rules are made; and
    the functions that deployment leaves out."""

    class Capture:  # stands in for the invoke host, keeping what a deploy hands the functions
        def __init__(self) -> None:
            self.settings: dict[str, sam_template.FunctionSettings] = {}
            self.absent: set[str] = set()

        def redeploy(self, settings: dict[str, sam_template.FunctionSettings], absent: Any = ()) -> None:
            self.settings, self.absent = settings, set(absent)

    capture = Capture()
    deployer = deploy.Deployer(template, capture, REGION)  # type: ignore[arg-type]
    deployer._create_buckets = lambda: None  # type: ignore[method-assign]  # moto's; nothing to create
    deployer._deploy_rules = lambda deployment: []  # type: ignore[method-assign]
    deployer.deploy(dict(DEPLOY_PARAMETERS))
    return capture.settings, capture.absent


def peer_bootstrap(python: Path, work_dir: Path) -> Path:
    """The peer's executable bootstrap: the runtime loop under the bench venv's python
    (its shebang), so the process measured is the interpreter itself, as on Lambda."""
    bootstrap = work_dir / "peer-bootstrap"
    source = (PEER_DIR / "coldstart_bootstrap.py").read_text()
    bootstrap.write_text(f"#!{python.absolute()}\n{source}")
    bootstrap.chmod(0o755)
    return bootstrap


def subjects(args: argparse.Namespace, endpoint: str, work_dir: Path) -> tuple[list[Subject], list[str]]:
    settings, absent = stack_settings(args.template)
    configs = lambda_host.discover_functions(args.functions_dir, args.bin_dir.resolve(), settings)
    found, problems = [], []
    for config in configs:
        if config.name in absent or config.name not in settings:
            problems.append(f"{config.name}: not deployed by {args.template} with {DEPLOY_PARAMETERS}")
            continue
        if config.name not in FIRST_EVENTS:
            problems.append(f"{config.name}: no first event defined in {Path(__file__).name}")
            continue
        if not config.binary.is_file():
            problems.append(f"{config.name}: {config.binary} is missing (build it first)")
            continue
        first, expected = FIRST_EVENTS[config.name]
        found.append(Subject(config.name, config.name, config, lambda_host.function_env(config, REGION, endpoint),
                             json.dumps(first).encode(), expected))
    bootstrap = peer_bootstrap(args.python, work_dir)
    first, expected = PEER_EVENT
    for name, clients in (("peer", ()), ("peer-7", SEVEN_CLIENTS)):
        peer_env = {
            "_HANDLER": "coldstart_peer.handler",
            "LAMBDA_TASK_ROOT": str(PEER_DIR),
            "LANG": "en_US.UTF-8",
        }
        config = lambda_host.FunctionConfig(name, bootstrap, sam_template.FunctionSettings(env=peer_env))
        env = lambda_host.function_env(config, REGION, endpoint)
        # Set last: function_env passes the caller's UNDERSTUDY_* variables through.
        env.pop("UNDERSTUDY_BENCH_PEER_CLIENTS", None)
        if clients:
            env["UNDERSTUDY_BENCH_PEER_CLIENTS"] = ",".join(clients)
        label = f"python peer, {len(clients) or 12} clients"
        found.append(Subject(name, label, config, env, json.dumps(first).encode(), expected, peer=True))
    return found, problems


# --- figures -------------------------------------------------------------------------------

METRICS = ("ready_ms", "first_invoke_ms", "peak_rss_mib")


def summary(samples: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    values = [s[metric] for s in samples if metric in s and "error" not in s]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 3) for v in values]}


def figure(stats: dict[str, Any] | None, digits: int) -> str:
    if stats is None:
        return "-"
    return f"{stats['median']:.{digits}f} [{stats['min']:.{digits}f}-{stats['max']:.{digits}f}]"


def median_of(result: dict[str, Any], metric: str) -> float | None:
    stats = result.get(metric)
    return stats["median"] if stats else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def python_versions(python: Path) -> dict[str, str]:
    probe = "import sys, boto3, botocore; print(sys.version.split()[0], boto3.__version__, botocore.__version__)"
    try:
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=60)
        version, boto3_version, botocore_version = out.stdout.split()
        return {"python": version, "boto3": boto3_version, "botocore": botocore_version}
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        raise SystemExit(f"{python} cannot import boto3 ({error}); make .bench-venv/.installed") from error


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)[1]
    except (OSError, TypeError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "arch": platform.machine(),
            "loadavg": list(os.getloadavg())}


def report(subject_list: list[Subject], args: argparse.Namespace, versions: dict[str, str],
           host: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for subject in subject_list:
        result: dict[str, Any] = {metric: summary(subject.samples, metric) for metric in METRICS}
        result["answer"] = subject.samples[-1]["answer"] if subject.samples else None
        result["expected"] = subject.expected.describe()
        result["failures"] = subject.failures
        if not subject.peer:
            result["binary_mib"] = subject.config.binary.stat().st_size / 2**20
        results[subject.name] = result
    peers = {s.name: results[s.name] for s in subject_list if s.peer}
    functions = {s.name: results[s.name] for s in subject_list if not s.peer}
    for name, result in functions.items():
        ready, rss = median_of(result, "ready_ms"), median_of(result, "peak_rss_mib")
        result["ratios"] = {
            peer: {"ready": ratio(ready, median_of(p, "ready_ms")), "rss": ratio(rss, median_of(p, "peak_rss_mib"))}
            for peer, p in peers.items()
        }
        ready_ratios = [r["ready"] for r in result["ratios"].values()]
        result["targets"] = {
            "ready_ms": ready is not None and ready <= TARGET_READY_MS,
            "peak_rss": rss is not None and rss * 2**20 <= TARGET_RSS_BYTES,
            "ready_vs_python": all(r is not None and r <= TARGET_READY_RATIO for r in ready_ratios),
        }
    return {
        "build": {"bin_dir": str(args.bin_dir), "profile": args.bin_dir.name},
        "runs": args.runs,
        "warmup": args.warmup,
        "machine": host,
        "peer": {**versions, "clients": {"peer": 12, "peer-7": list(SEVEN_CLIENTS)}},
        "targets": {"ready_ms": TARGET_READY_MS, "peak_rss_bytes": TARGET_RSS_BYTES,
                    "ready_vs_python": TARGET_READY_RATIO},
        "functions": functions,
        "peers": peers,
    }


def table(data: dict[str, Any], subject_list: list[Subject]) -> str:
    labels = {s.name: s.label for s in subject_list}
    lines = [
        f"cold start: {data['build']['profile']} build ({data['build']['bin_dir']}, {data['machine']['arch']}), "
        f"{data['runs']} runs each after {data['warmup']} warm-up; median [min-max]",
        f"python peer: Python {data['peer']['python']}, boto3 {data['peer']['boto3']}, "
        f"botocore {data['peer']['botocore']}; ratios are ours / peer's (medians)",
        f"machine: {data['machine']['cpu'] or '?'}, {data['machine']['cores']} cores, load average "
        + " ".join(f"{x:.2f}" for x in data['machine']['loadavg']) + " (1, 5, 15 min) before the runs",
        "",
        f"{'':<25}{'ready ms':<23}{'first invoke ms':<20}{'peak RSS MiB':<18}{'binary':>8}"
        f"{'ready/py12':>11}{'ready/py7':>10}{'RSS/py12':>9}{'RSS/py7':>8}  first answer",
    ]

    def fmt(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for name, result in data["functions"].items():
        r12, r7 = result["ratios"].get("peer", {}), result["ratios"].get("peer-7", {})
        lines.append(
            f"{labels[name]:<25}{figure(result['ready_ms'], 1):<23}{figure(result['first_invoke_ms'], 2):<20}"
            f"{figure(result['peak_rss_mib'], 1):<18}{result['binary_mib']:>4.1f} MiB"
            f"{fmt(r12.get('ready'), 4):>9}{fmt(r7.get('ready'), 4):>10}"
            f"{fmt(r12.get('rss'), 3):>9}{fmt(r7.get('rss'), 3):>8}  {result['answer']}"
        )
    for name, result in data["peers"].items():
        lines.append(
            f"{labels[name]:<25}{figure(result['ready_ms'], 1):<23}{figure(result['first_invoke_ms'], 2):<20}"
            f"{figure(result['peak_rss_mib'], 1):<18}{'':>8}{'':>11}{'':>10}{'':>9}{'':>8}  {result['answer']}"
        )
    lines += ["", "targets (flagged, not failed):"]
    functions = data["functions"]

    def verdict(key: str, describe: Any) -> str:
        missed = [name for name, r in functions.items() if not r["targets"][key]]
        worst = describe()
        if not missed:
            return f"met by all {len(functions)} ({worst})"
        return f"MISSED by {', '.join(missed)} ({worst})"

    def worst_of(metric: str, unit: str, digits: int) -> str:
        named = [(median_of(r, metric), name) for name, r in functions.items() if median_of(r, metric) is not None]
        if not named:
            return "no figures"
        value, name = max(named)
        return f"worst {name} {value:.{digits}f} {unit}"

    def worst_ratio() -> str:
        parts = []
        for peer in data["peers"]:
            named = [(r["ratios"][peer]["ready"], name) for name, r in functions.items()
                     if r["ratios"][peer]["ready"] is not None]
            if named:
                value, name = max(named)
                parts.append(f"{value:.4f} x {labels[peer]} ({name})")
        return "worst " + "; ".join(parts) if parts else "no figures"

    checks = (
        (f"ready <= {TARGET_READY_MS:.0f} ms:", verdict("ready_ms", lambda: worst_of("ready_ms", "ms", 1))),
        (f"peak RSS <= 20 MB ({TARGET_RSS_BYTES / 2**20:.2f} MiB):",
         verdict("peak_rss", lambda: worst_of("peak_rss_mib", "MiB", 1))),
        (f"ready <= {TARGET_READY_RATIO} x Python's:", verdict("ready_vs_python", worst_ratio)),
    )
    lines += [f"  {label:<32}{text}" for label, text in checks]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=Path("target/release"))
    parser.add_argument("--python", type=Path, default=Path(".bench-venv/bin/python"),
                        help="the peer's interpreter (with boto3)")
    parser.add_argument("--functions-dir", type=Path, default=ROOT / "functions")
    parser.add_argument("--template", type=Path, default=ROOT / "infra" / "template.yaml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(".local/bench-coldstart.json"))
    parser.add_argument("--work-dir", type=Path, default=Path(".local/bench-coldstart"),
                        help="the peer's bootstrap and every instance's log")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per Runtime API request
    versions = python_versions(args.python)
    host = machine()  # before the runs: the load they ran under
    args.work_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.work_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    # A port bound but never listening: any AWS call is refused at once, on this machine.
    refuser = socket.socket()
    refuser.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{refuser.getsockname()[1]}"
    try:
        subject_list, problems = subjects(args, endpoint, args.work_dir)
        for problem in problems:
            log(problem)
        log(f"{len(subject_list)} subjects, {args.warmup} warm-up + {args.runs} runs each; logs in {log_dir}")
        for round_number in range(args.warmup + args.runs):
            measured = round_number >= args.warmup
            for subject in subject_list:
                sample = start_once(subject, log_dir)
                if "error" in sample:
                    subject.failures.append(f"run {round_number + 1}: {sample['error']}")
                    log(f"{subject.name}: {sample['error']}")
                if measured:
                    subject.samples.append(sample)
            log(f"{'run' if measured else 'warm-up'} {round_number + 1 - (args.warmup if measured else 0)} done")
    finally:
        refuser.close()
    data = report(subject_list, args, versions, host)
    data["problems"] = problems
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data, subject_list))
    failed = problems + [f"{s.name}: {f}" for s in subject_list for f in s.failures]
    if failed:
        print("\nFAILED (a function or the peer did not start or answer as expected):")
        for failure in failed:
            print(f"  {failure}")
        return 1
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
