"""`make bench-scale`: what scale-to-zero costs in AWS calls on a staging of 250 resources.

Starts the local stack (tests/local/stack.py: moto + the Lambda host running the real
`target/debug/scale-to-zero`) with slow transitions off, so the figures count calls,
not waits. Seeds staging (account 123456789012, us-east-1):

- 200 ECS services over 4 clusters, desired counts 1-3, every fifth registered with
  Application Auto Scaling (min 1..desired, max desired+1..desired+3);
- 35 RDS PostgreSQL instances and 15 Aurora PostgreSQL clusters with one instance each;

all tagged understudy:environment=staging (Aurora member instances too, as IaC tags
them), plus bystanders that must not be touched: ECS services untagged or tagged
production (one with a scalable target), an untagged and a production RDS instance,
a production Aurora cluster.

Then invokes `scale-to-zero` once per phase through the invoke host (`sleep`, `wake`
phase all, `status`; config `{}`), timing each, and reads the request recorder
(`/understudy/requests`) for each: total, read and mutating calls, calls per
resource, the most mutating calls one resource got (by identifier, every form of
it: name, ARN, `service/<cluster>/<name>`), and the calls by operation. Finally the
correctness check: after sleep every staging service is at 0 (scalable targets at
0/0) and every staging database stopped; after wake every desired count, min and
max is the seeded one, every database available, no understudy:sleep:* tag left;
bystanders got no mutating call at all and kept their state. Exit status 1 if a
check fails.

The peer, measured in the same invocation: "the hand-run script" (HandScript), the
seeds' bash loops re-enacted with boto3 (no retries): per service `aws ecs
describe-services` for the desired count, saved with each database's status to a local
JSON file, then `update-service --desired-count 0` and `wait services-stable`; per
database `describe-db-instances` / `describe-db-clusters` and `stop-db-*`; wake reverses
from the file (`start-db-*`, `wait db-*-available`, `update-service`, `wait
services-stable`). No seed touches Application Auto Scaling or tags, so it does not. It
runs on a second stack, stopped understudy's first and seeded the same way, and is
counted by the same recorder. Printed: a table of calls and wall seconds, script ÷
understudy, per phase; the script's wait calls; the bash process-start cost per `aws`
command it leaves out; what it leaves undone (autoscaling min capacities, no tags). Its
own checks (asleep but for scalable targets, awake, bystanders) also set exit status 1.

Usage (repository root, after `cargo build`; the .venv python has boto3 and moto):

    .venv/bin/python tests/bench/scale_bench.py [--bin-dir target/debug]
        [--template infra/template.yaml] [--output .local/bench-scale.json]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "tests" / "local" / "stack.py"
sys.path.insert(0, str(ROOT / "tests" / "local"))
import sam_template  # noqa: E402

FUNCTION = "scale-to-zero"
ACCOUNT = "123456789012"
REGION = "us-east-1"
TAG_KEY, STAGING, PRODUCTION = "understudy:environment", "staging", "production"
SLEEP_TAG_PREFIX = "understudy:sleep:"
SCALABLE_DIMENSION = "ecs:service:DesiredCount"
FUNCTION_TIMEOUT_S = 120  # what infra/template.yaml gives ScaleToZeroFunction


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the stack --------------------------------------------------------------------


def template_for(template: Path, workdir: Path) -> Path:
    """The template the stack reads: the repository's, or, while it lacks the function,
    a stand-in giving scale-to-zero its deployed timeout (the host's default is 3 s)."""
    if template.is_file():
        settings = sam_template.function_settings(sam_template.load_template(template))
        if FUNCTION in settings:
            log(f"{FUNCTION}: timeout {settings[FUNCTION].timeout} s, {settings[FUNCTION].memory} MB ({template})")
            return template
    stand_in = workdir / "template.yaml"
    stand_in.write_text(
        "Resources:\n  ScaleToZeroFunction:\n    Type: AWS::Serverless::Function\n"
        f"    Metadata:\n      BuildProperties:\n        Binary: {FUNCTION}\n"
        f"    Properties:\n      Timeout: {FUNCTION_TIMEOUT_S}\n      MemorySize: 256\n"
        "      Environment:\n        Variables:\n          RUST_LOG: info\n"
    )
    log(f"{template} has no {FUNCTION}: using a stand-in template (timeout {FUNCTION_TIMEOUT_S} s)")
    return stand_in


class Stack:
    def __init__(self, bin_dir: Path, functions_dir: Path, template: Path, log_dir: Path):
        self.process = subprocess.Popen(
            [sys.executable, str(STACK), "--bin-dir", str(bin_dir), "--functions-dir", str(functions_dir),
             "--template", str(template), "--slow-polls", "0", "--log-dir", str(log_dir), "--exit-with-parent"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        exports = {}
        for line in self.process.stdout:
            if line.startswith("# understudy local stack ready"):
                break
            key, value = line.removeprefix("export ").rstrip("\n").split("=", 1)
            exports[key] = value
        else:
            raise SystemExit(f"the stack did not start; see {log_dir}/stack.log")
        self.moto = exports["UNDERSTUDY_MOTO_ENDPOINT"]
        self.invoke_endpoint = exports["UNDERSTUDY_INVOKE_ENDPOINT"]
        self.log_dir = log_dir

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, dict, Any]:
        request = urllib.request.Request(
            f"{self.invoke_endpoint}{path}", data=None if body is None else json.dumps(body).encode(),
            method=method, headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.load(error)

    def client(self, service: str):
        return boto3.client(
            service, endpoint_url=self.moto, region_name=REGION, aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}, max_pool_connections=16),
        )


# --- the seeded staging --------------------------------------------------------------


def staging_tags(value: str | None) -> list[dict[str, str]]:
    return [] if value is None else [{"Key": TAG_KEY, "Value": value}]


class Seed:
    """What was seeded, and the same read back from moto."""

    def __init__(self, services: int, clusters: int, instances: int, aurora: int):
        self.clusters = [f"bench-c{c + 1}" for c in range(clusters)]
        # (cluster, name, desired, tag value or None, (min, max) or None)
        self.services: list[tuple[str, str, int, str | None, tuple[int, int] | None]] = []
        for n in range(services):
            desired = 1 + n % 3
            scaling = (1 + n % desired, desired + 1 + n % 3) if n % 5 == 0 else None
            self.services.append((self.clusters[n % clusters], f"svc-{n:03d}", desired, STAGING, scaling))
        self.services += [
            (self.clusters[0], "bystander-untagged-svc", 2, None, (1, 4)),
            (self.clusters[1 % clusters], "bystander-untagged-svc2", 1, None, None),
            (self.clusters[2 % clusters], "bystander-prod-svc", 3, PRODUCTION, (2, 5)),
        ]
        # (identifier, tag value or None)
        self.instances = [(f"db-{n:02d}", STAGING) for n in range(instances)]
        self.instances += [("bystander-untagged-db", None), ("bystander-prod-db", PRODUCTION)]
        self.aurora = [(f"aurora-{n:02d}", STAGING) for n in range(aurora)]
        self.aurora += [("bystander-prod-aurora", PRODUCTION)]

    def staging_services(self):
        return [s for s in self.services if s[3] == STAGING]

    def bystanders(self) -> list[str]:
        clusters = [c for c, tag in self.aurora if tag != STAGING]
        return ([s[1] for s in self.services if s[3] != STAGING] + [i for i, tag in self.instances if tag != STAGING]
                + clusters + [f"{c}-1" for c in clusters])

    def resources(self) -> int:
        """Staging's resources the function must act on (Aurora members count with their cluster)."""
        return (len(self.staging_services()) + sum(tag == STAGING for _, tag in self.instances)
                + sum(tag == STAGING for _, tag in self.aurora))


def seed(stack: Stack, spec: Seed) -> None:
    ecs, aas, rds = stack.client("ecs"), stack.client("application-autoscaling"), stack.client("rds")
    for cluster in spec.clusters:
        ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(family="bench-app", containerDefinitions=[
        {"name": "app", "image": "public.ecr.aws/nginx/nginx:latest", "memory": 256}])

    def service(entry) -> None:
        cluster, name, desired, tag, scaling = entry
        tags = [{"key": TAG_KEY, "value": tag}] if tag else []
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition="bench-app", desiredCount=desired,
                           **({"tags": tags} if tags else {}))
        if scaling:
            aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=f"service/{cluster}/{name}",
                                         ScalableDimension=SCALABLE_DIMENSION, MinCapacity=scaling[0],
                                         MaxCapacity=scaling[1])

    def instance(entry) -> None:
        identifier, tag = entry
        rds.create_db_instance(DBInstanceIdentifier=identifier, Engine="postgres", DBInstanceClass="db.t4g.micro",
                               AllocatedStorage=20, MasterUsername="bench", MasterUserPassword="bench-password-1",
                               Tags=staging_tags(tag))

    def aurora(entry) -> None:
        identifier, tag = entry
        rds.create_db_cluster(DBClusterIdentifier=identifier, Engine="aurora-postgresql",
                              MasterUsername="bench", MasterUserPassword="bench-password-1", Tags=staging_tags(tag))
        rds.create_db_instance(DBInstanceIdentifier=f"{identifier}-1", DBClusterIdentifier=identifier,
                               Engine="aurora-postgresql", DBInstanceClass="db.r6g.large", Tags=staging_tags(tag))

    # One at a time: moto's backends are not thread-safe (a describe racing a create
    # can fail with "OrderedDict mutated during iteration").
    for entry in spec.services:
        service(entry)
    for entry in spec.instances:
        instance(entry)
    for entry in spec.aurora:
        aurora(entry)


def sleep_tags(tags: list[dict[str, str]], key: str) -> list[str]:
    return sorted(tag[key] for tag in tags if tag[key].startswith(SLEEP_TAG_PREFIX))


def observe(stack: Stack, spec: Seed) -> dict[str, Any]:
    """Every seeded resource as moto now has it."""
    ecs, aas, rds = stack.client("ecs"), stack.client("application-autoscaling"), stack.client("rds")
    services: dict[str, dict[str, Any]] = {}
    by_cluster: dict[str, list[str]] = {}
    for cluster, name, *_ in spec.services:
        by_cluster.setdefault(cluster, []).append(name)
    for cluster, names in by_cluster.items():
        for start in range(0, len(names), 10):
            answer = ecs.describe_services(cluster=cluster, services=names[start:start + 10], include=["TAGS"])
            for found in answer["services"]:
                services[found["serviceName"]] = {
                    "desired": found["desiredCount"], "running": found["runningCount"],
                    "sleep_tags": sleep_tags(found.get("tags", []), "key"),
                }
    targets = {}
    for page in aas.get_paginator("describe_scalable_targets").paginate(ServiceNamespace="ecs"):
        for target in page["ScalableTargets"]:
            targets[target["ResourceId"].rsplit("/", 1)[-1]] = (target["MinCapacity"], target["MaxCapacity"])
    databases = {}
    for page in rds.get_paginator("describe_db_instances").paginate():
        for db in page["DBInstances"]:
            databases[db["DBInstanceIdentifier"]] = {
                "status": db["DBInstanceStatus"],
                "sleep_tags": sleep_tags(db.get("TagList", []), "Key"),
            }
    for page in rds.get_paginator("describe_db_clusters").paginate():
        for cluster in page["DBClusters"]:
            databases[cluster["DBClusterIdentifier"]] = {
                "status": cluster["Status"],
                "sleep_tags": sleep_tags(cluster.get("TagList", []), "Key"),
            }
    return {"services": services, "targets": targets, "databases": databases}


# --- a phase and its figures ---------------------------------------------------------


def resource_key(identifier: str) -> str:
    """One name for every form of a resource's identifier: `svc-001`,
    `arn:aws:ecs:...:service/bench-c1/svc-001`, `service/bench-c1/svc-001`,
    `arn:aws:rds:...:db:db-01` (seeded names are unique across kinds)."""
    return re.split(r"[/:]", identifier)[-1]


def figures(name: str, records: list[dict[str, Any]], seconds: float, resources: int,
            output: Any, function_error: str | None) -> dict[str, Any]:
    reads = [r for r in records if not r["mutating"]]
    mutating = [r for r in records if r["mutating"]]
    per_resource: Counter[str] = Counter()
    unattributed = 0
    for record in mutating:
        named = record.get("identifiers") or ([record["identifier"]] if record.get("identifier") else [])
        unattributed += not named
        for key in {resource_key(identifier) for identifier in named}:
            per_resource[key] += 1
    busiest = per_resource.most_common(1)
    return {
        "phase": name,
        "wall_s": round(seconds, 2),
        "function_error": function_error,
        "resources": resources,
        "reported_resources": len(output.get("resources", [])) if isinstance(output, dict) else None,
        "calls": len(records),
        "reads": len(reads),
        "mutating": len(mutating),
        "reads_per_resource": round(len(reads) / resources, 2),
        "mutating_per_resource": round(len(mutating) / resources, 2),
        "max_mutating_one_resource": busiest[0][1] if busiest else 0,
        "busiest_resource": busiest[0][0] if busiest else None,
        "mutating_without_identifier": unattributed,
        "errors": sum(1 for r in records if (r.get("status") or 0) >= 400),
        "by_operation": dict(sorted(Counter(f"{r['service']}:{r['action']}" for r in records).items())),
        "mutating_on": dict(per_resource),
        "output_summary": summary(output),
        "output": output,
        "requests": records,
    }


def summary(output: Any) -> Any:
    if not isinstance(output, dict):
        return output
    return {key: output[key] for key in ("state", "settled", "databases_available", "services_stable", "counts",
                                         "errorType", "errorMessage") if key in output}


def run_phase(stack: Stack, name: str, payload: dict[str, Any], resources: int) -> dict[str, Any]:
    stack.request("DELETE", "/understudy/requests")
    started = time.monotonic()
    status, headers, output = stack.request(
        "POST", f"/2015-03-31/functions/{FUNCTION}/invocations", payload, timeout=FUNCTION_TIMEOUT_S + 30)
    seconds = time.monotonic() - started
    if status != 200:
        raise SystemExit(f"{name}: the invoke host answered {status}: {output}")
    function_error = headers.get("X-Amz-Function-Error")
    records = stack.request("GET", "/understudy/requests")[2]["requests"]
    result = figures(name, records, seconds, resources, output, function_error)
    log(f"{name}: {seconds:.2f} s, {len(records)} calls, output {json.dumps(result['output_summary'])[:300]}")
    return result


# --- the peer: the hand-run script ------------------------------------------------------


class HandScript:
    """The seeds' way, call for call: what a team's bash script does with the AWS CLI,
    re-enacted with boto3 in this process (no retries, like the stack's other clients).

    Its resource lists are written into it, as the bash arrays of such a script are:
    staging's names, nothing discovered. `sleep`: one `aws ecs describe-services` per
    service (a shell loop) for its desiredCount, one `aws rds describe-db-instances
    --db-instance-identifier` per instance and `describe-db-clusters
    --db-cluster-identifier` per Aurora cluster for its status, all saved to a local JSON
    file; then per service `aws ecs update-service --desired-count 0` followed by `aws ecs
    wait services-stable --delay 10 --max-attempts 30` (seed 002, steps 5 and 6), and per
    database that was available `aws rds stop-db-instance` / `stop-db-cluster` (the CLI
    has no wait for a stopped database). `wake`, from the file: `start-db-instance` /
    `start-db-cluster` per database it stopped, then `aws rds wait db-instance-available`
    / `db-cluster-available` per database (seed 000 waits after each RDS change), then per
    service `update-service --desired-count <saved>` and `wait services-stable`. No seed
    calls Application Auto Scaling or tags anything, so neither does the script."""

    def __init__(self, stack: Stack, spec: Seed, state_file: Path):
        self.ecs, self.rds = stack.client("ecs"), stack.client("rds")
        self.services = [(cluster, name) for cluster, name, *_ in spec.staging_services()]
        self.instances = [identifier for identifier, tag in spec.instances if tag == STAGING]
        self.clusters = [identifier for identifier, tag in spec.aurora if tag == STAGING]
        self.state_file = state_file
        self.waiting, self.wait_calls = False, 0
        for client in (self.ecs, self.rds):
            client.meta.events.register("before-call", self._count_wait_call)

    def _count_wait_call(self, **_: Any) -> None:
        self.wait_calls += self.waiting

    def _wait(self, client: Any, waiter: str, **kwargs: Any) -> None:
        self.waiting = True
        try:
            client.get_waiter(waiter).wait(**kwargs)
        finally:
            self.waiting = False

    def _wait_stable(self, cluster: str, name: str) -> None:
        self._wait(self.ecs, "services_stable", cluster=cluster, services=[name],
                   WaiterConfig={"Delay": 10, "MaxAttempts": 30})

    def sleep(self) -> dict[str, Any]:
        saved: dict[str, dict[str, Any]] = {"services": {}, "instances": {}, "clusters": {}}
        for cluster, name in self.services:
            found = self.ecs.describe_services(cluster=cluster, services=[name])["services"][0]
            saved["services"][f"{cluster}/{name}"] = found["desiredCount"]
        for identifier in self.instances:
            found = self.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
            saved["instances"][identifier] = found["DBInstanceStatus"]
        for identifier in self.clusters:
            found = self.rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
            saved["clusters"][identifier] = found["Status"]
        self.state_file.write_text(json.dumps(saved, indent=2))
        for key in saved["services"]:
            cluster, name = key.split("/")
            self.ecs.update_service(cluster=cluster, service=name, desiredCount=0)
            self._wait_stable(cluster, name)
        for identifier, status in saved["instances"].items():
            if status == "available":
                self.rds.stop_db_instance(DBInstanceIdentifier=identifier)
        for identifier, status in saved["clusters"].items():
            if status == "available":
                self.rds.stop_db_cluster(DBClusterIdentifier=identifier)
        return {"state_file": str(self.state_file), "state_file_bytes": self.state_file.stat().st_size}

    def wake(self) -> dict[str, Any]:
        saved = json.loads(self.state_file.read_text())
        instances = [identifier for identifier, status in saved["instances"].items() if status == "available"]
        clusters = [identifier for identifier, status in saved["clusters"].items() if status == "available"]
        for identifier in instances:
            self.rds.start_db_instance(DBInstanceIdentifier=identifier)
        for identifier in clusters:
            self.rds.start_db_cluster(DBClusterIdentifier=identifier)
        for identifier in instances:
            self._wait(self.rds, "db_instance_available", DBInstanceIdentifier=identifier)
        for identifier in clusters:
            self._wait(self.rds, "db_cluster_available", DBClusterIdentifier=identifier)
        for key, desired in saved["services"].items():
            cluster, name = key.split("/")
            self.ecs.update_service(cluster=cluster, service=name, desiredCount=desired)
            self._wait_stable(cluster, name)
        return {"state_file": str(self.state_file)}


def run_script_phase(stack: Stack, script: HandScript, action: str, resources: int) -> dict[str, Any]:
    """One phase of the hand-run script, measured as `run_phase` measures the function's;
    the first failing call ends it, as `set -e` would."""
    stack.request("DELETE", "/understudy/requests")
    script.wait_calls = 0
    started = time.monotonic()
    output, error = None, None
    try:
        output = getattr(script, action)()
    except (ClientError, WaiterError) as failure:
        error = f"{type(failure).__name__}: {failure}"
    seconds = time.monotonic() - started
    records = stack.request("GET", "/understudy/requests")[2]["requests"]
    result = figures(f"script {action}", records, seconds, resources, None, error)
    result["output"], result["output_summary"] = output, output
    result["wait_calls"] = script.wait_calls
    log(f"script {action}: {seconds:.2f} s, {len(records)} calls ({script.wait_calls} waiting)"
        + (f", stopped by {error}" if error else ""))
    return result


def script_findings(spec: Seed, asleep: dict[str, Any], sleep: dict[str, Any]) -> dict[str, Any]:
    """What the script leaves undone while staging sleeps."""
    autoscaled = [(name, scaling) for _, name, _, _, scaling in spec.staging_services() if scaling]
    left = {name: asleep["targets"].get(name) for name, _ in autoscaled
            if (asleep["targets"].get(name) or (0, 0))[0] > 0}
    return {
        "autoscaled_services": len(autoscaled),
        "asleep_with_min_capacity_above_0": len(left),
        "min_capacities_left": dict(sorted(Counter(target[0] for target in left.values()).items())),
        "resources_tagged_asleep": sum(bool(found["sleep_tags"]) for found in
                                       list(asleep["services"].values()) + list(asleep["databases"].values())),
        "state_file_bytes": (sleep["output"] or {}).get("state_file_bytes"),
    }


def cli_start_s(runs: int = 3) -> float:
    """What each `aws` command costs a bash script before it sends anything: a new python
    process importing boto3 and making a client (median of `runs`). The AWS CLI imports
    more than that, so this is a lower bound."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", f"import boto3; boto3.client('ecs', region_name='{REGION}')"],
                       check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


# --- checks ----------------------------------------------------------------------------


def check_asleep(spec: Seed, now: dict[str, Any], targets_to_zero: bool = True) -> list[str]:
    """`targets_to_zero=False` for the hand-run script, which never touches scalable targets."""
    problems = []
    for cluster, name, desired, tag, scaling in spec.staging_services():
        found = now["services"].get(name)
        if found is None or found["desired"] != 0:
            problems.append(f"after sleep: service {cluster}/{name} desired {found and found['desired']}, not 0")
        if targets_to_zero and scaling and now["targets"].get(name) != (0, 0):
            problems.append(f"after sleep: scalable target of {name} is {now['targets'].get(name)}, not (0, 0)")
    for identifier, tag in spec.instances + spec.aurora:
        status = now["databases"].get(identifier, {}).get("status")
        if status != ("stopped" if tag == STAGING else "available"):
            problems.append(f"after sleep: database {identifier} ({tag or 'untagged'}) is {status}")
    for cluster, name, desired, tag, scaling in spec.services:
        if tag != STAGING and (now["services"].get(name, {}).get("desired") != desired
                               or (scaling and now["targets"].get(name) != scaling)):
            problems.append(f"after sleep: bystander service {name} changed: {now['services'].get(name)}, "
                            f"target {now['targets'].get(name)}")
    return problems


def check_awake(spec: Seed, now: dict[str, Any]) -> list[str]:
    problems = []
    for cluster, name, desired, tag, scaling in spec.services:
        found = now["services"].get(name)
        if found is None or found["desired"] != desired:
            problems.append(f"after wake: service {cluster}/{name} desired {found and found['desired']}, "
                            f"seeded {desired}")
        elif found["sleep_tags"]:
            problems.append(f"after wake: service {name} still carries {found['sleep_tags']}")
        if scaling and now["targets"].get(name) != scaling:
            problems.append(f"after wake: scalable target of {name} is {now['targets'].get(name)}, seeded {scaling}")
    for identifier, _ in spec.instances + spec.aurora:
        found = now["databases"].get(identifier, {})
        if found.get("status") != "available":
            problems.append(f"after wake: database {identifier} is {found.get('status')}")
        elif found["sleep_tags"]:
            problems.append(f"after wake: database {identifier} still carries {found['sleep_tags']}")
    return problems


def check_bystanders(spec: Seed, phases: list[dict[str, Any]]) -> list[str]:
    problems = []
    for bystander in spec.bystanders():
        for phase in phases:
            if phase["mutating_on"].get(bystander):
                problems.append(f"{phase['phase']}: {phase['mutating_on'][bystander]} mutating call(s) on "
                                f"bystander {bystander}")
    return problems


# --- report ----------------------------------------------------------------------------


def table(phases: list[dict[str, Any]]) -> str:
    rows = [
        "| phase | resources | calls | reads | mutating | per resource (read / mutating) "
        "| max mutating on one resource | errors | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        reported = "" if p["reported_resources"] in (None, p["resources"]) else f" ({p['reported_resources']} reported)"
        rows.append(
            f"| {p['phase']} | {p['resources']}{reported} | {p['calls']} | {p['reads']} | {p['mutating']} "
            f"| {p['reads_per_resource']:.2f} / {p['mutating_per_resource']:.2f} "
            f"| {p['max_mutating_one_resource']} ({p['busiest_resource'] or '-'}) | {p['errors']} "
            f"| {p['wall_s']:.2f} |"
        )
    return "\n".join(rows)


def operations_table(phases: list[dict[str, Any]]) -> str:
    operations = sorted({op for p in phases for op in p["by_operation"]})
    rows = ["| operation | " + " | ".join(p["phase"] for p in phases) + " |",
            "|---|" + "---|" * len(phases)]
    for op in operations:
        rows.append(f"| {op} | " + " | ".join(str(p["by_operation"].get(op, 0)) for p in phases) + " |")
    return "\n".join(rows)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def comparison(phases: list[dict[str, Any]], script_phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """understudy's phase against the script's of the same name, and both together."""
    by_action = {p["phase"].removeprefix("script "): p for p in script_phases}
    pairs = [(p, by_action[p["phase"]]) for p in phases if p["phase"] in by_action]
    rows = []
    for name, ours, theirs in [(u["phase"], [u], [s]) for u, s in pairs] + [
            (" + ".join(u["phase"] for u, _ in pairs), [u for u, _ in pairs], [s for _, s in pairs])]:
        calls = sum(p["calls"] for p in ours), sum(p["calls"] for p in theirs)
        wall = round(sum(p["wall_s"] for p in ours), 2), round(sum(p["wall_s"] for p in theirs), 2)
        rows.append({"phase": name, "understudy_calls": calls[0], "script_calls": calls[1],
                     "calls_ratio": ratio(calls[1], calls[0]), "understudy_wall_s": wall[0],
                     "script_wall_s": wall[1], "wall_ratio": ratio(wall[1], wall[0]),
                     "script_wait_calls": sum(p["wait_calls"] for p in theirs)})
    return rows


def comparison_table(rows: list[dict[str, Any]]) -> str:
    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"
    lines = ["| phase | understudy calls | script calls | ratio (script ÷ understudy) | understudy wall s "
             "| script wall s | ratio (script ÷ understudy) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['understudy_calls']} | {r['script_calls']} | {shown(r['calls_ratio'])} "
                     f"| {r['understudy_wall_s']:.2f} | {r['script_wall_s']:.2f} | {shown(r['wall_ratio'])} |")
    return "\n".join(lines)


def fresh_staging(args: argparse.Namespace, spec: Seed, workdir: Path, logs: str) -> tuple[Stack, float]:
    """A new stack, slow transitions off, staging seeded and read back as intended."""
    stack = Stack(args.bin_dir, args.functions_dir, template_for(args.template, workdir), workdir / logs)
    try:
        if stack.request("POST", "/understudy/slow-polls", {"polls": 0})[:3:2] != (200, {"polls": 0}):
            raise SystemExit("could not turn slow transitions off")
        started = time.monotonic()
        seed(stack, spec)
        seeded = observe(stack, spec)
        seed_s = time.monotonic() - started
        log(f"seeded {len(spec.services)} services, {len(spec.instances)} instances, {len(spec.aurora)} Aurora "
            f"clusters ({spec.resources()} staging resources, {len(spec.bystanders())} bystanders) in {seed_s:.1f} s "
            f"(logs in {workdir / logs})")
        problems = check_awake(spec, seeded)  # the seed itself, read back
        if problems:
            raise SystemExit("the seed is not as intended:\n  " + "\n  ".join(problems[:20]))
        return stack, seed_s
    except BaseException:
        stack.stop()
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "debug")
    parser.add_argument("--functions-dir", type=Path, default=ROOT / "functions")
    parser.add_argument("--template", type=Path, default=ROOT / "infra" / "template.yaml")
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--db-instances", type=int, default=35)
    parser.add_argument("--db-clusters", type=int, default=15)
    parser.add_argument("--output", type=Path, default=ROOT / ".local" / "bench-scale.json")
    parser.add_argument("--seed-only", action="store_true",
                        help="seed, read back and check the seeded state, invoke nothing")
    args = parser.parse_args()
    binary = args.bin_dir / FUNCTION
    if not args.seed_only and not binary.exists():
        raise SystemExit(f"{binary} is missing: cargo build --workspace --bins first")

    workdir = Path(tempfile.mkdtemp(prefix="understudy-bench-scale-"))
    log(f"work dir {workdir}")
    spec = Seed(args.services, args.clusters, args.db_instances, args.db_clusters)

    # understudy, on a stack of its own.
    stack, seed_s = fresh_staging(args, spec, workdir, "logs")
    try:
        if args.seed_only:
            return 0
        phases, checks = [], {}
        phases.append(run_phase(stack, "sleep", {"action": "sleep", "config": {}}, spec.resources()))
        checks["asleep"] = check_asleep(spec, observe(stack, spec))
        phases.append(run_phase(stack, "wake", {"action": "wake", "phase": "all", "config": {}}, spec.resources()))
        checks["awake"] = check_awake(spec, observe(stack, spec))
        phases.append(run_phase(stack, "status", {"action": "status", "config": {}}, spec.resources()))
        checks["bystanders"] = check_bystanders(spec, phases)
        for phase in phases:
            if phase["function_error"]:
                checks.setdefault("function errors", []).append(
                    f"{phase['phase']}: {json.dumps(phase['output_summary'])}")
    finally:
        stack.stop()

    # The peer, the hand-run script: the same staging, seeded afresh on a new stack.
    stack, script_seed_s = fresh_staging(args, spec, workdir, "logs-script")
    try:
        script = HandScript(stack, spec, workdir / "scaled-down.json")
        script_phases = [run_script_phase(stack, script, "sleep", spec.resources())]
        asleep = observe(stack, spec)
        checks["script asleep"] = check_asleep(spec, asleep, targets_to_zero=False)
        findings = script_findings(spec, asleep, script_phases[0])
        script_phases.append(run_script_phase(stack, script, "wake", spec.resources()))
        checks["script awake"] = check_awake(spec, observe(stack, spec))
        checks["script bystanders"] = check_bystanders(spec, script_phases)
        for phase in script_phases:
            if phase["function_error"]:
                checks.setdefault("script errors", []).append(f"{phase['phase']}: {phase['function_error']}")
        saved_state = json.loads(script.state_file.read_text()) if script.state_file.exists() else None
    finally:
        stack.stop()
    start_s = cli_start_s()
    rows = comparison(phases, script_phases)

    report = {
        "seed": {"ecs_services": len(spec.staging_services()), "clusters": len(spec.clusters),
                 "scalable_targets": sum(1 for s in spec.staging_services() if s[4]),
                 "db_instances": sum(t == STAGING for _, t in spec.instances),
                 "aurora_clusters": sum(t == STAGING for _, t in spec.aurora),
                 "bystanders": spec.bystanders(), "seconds": round(seed_s, 1)},
        "phases": phases, "checks": checks,
        "peer": {"name": "the hand-run script", "description": " ".join(HandScript.__doc__.split()),
                 "seed_seconds": round(script_seed_s, 1), "phases": script_phases, "findings": findings,
                 "state_file": saved_state, "process_start_s_per_aws_command": round(start_s, 3)},
        "comparison": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    s = report["seed"]
    print(f"staging: {s['ecs_services']} ECS services on {s['clusters']} clusters ({s['scalable_targets']} with "
          f"Application Auto Scaling), {s['db_instances']} RDS instances, {s['aurora_clusters']} Aurora clusters "
          f"(one instance each) = {spec.resources()} resources; {len(s['bystanders'])} bystanders; "
          f"slow polls 0; {binary}")
    print()
    print(table(phases))
    print()
    print(operations_table(phases + script_phases))
    print()
    for phase in phases:
        print(f"{phase['phase']} output: {json.dumps(phase['output_summary'])}")
        if phase["mutating_without_identifier"]:
            print(f"  {phase['mutating_without_identifier']} mutating call(s) name no resource the recorder "
                  "knows: not in the per-resource figures")
    print()
    print("peer: the hand-run script (the seeds' `aws ecs describe-services` / `update-service` / `wait "
          "services-stable` and `aws rds describe-db-* / stop-db-* / start-db-*` loops, re-enacted with boto3; "
          "resource lists written in, counts kept in a local JSON file), on its own stack seeded the same way")
    print()
    print(comparison_table(rows))
    print()
    waits = {r["phase"]: r["script_wait_calls"] for r in rows}
    status_calls = next((p["calls"] for p in phases if p["phase"] == "status"), 0)
    unwaited = [(r["phase"], r["script_calls"] - r["script_wait_calls"], r["understudy_calls"]) for r in rows]
    bare = " / ".join(f"{name} {calls} ({calls / ours:.2f})" for name, calls, ours in unwaited if ours)
    print(f"script calls include its waits ({', '.join(f'{k} {v}' for k, v in waits.items())}: `aws ecs wait "
          f"services-stable` per service, and on wake `aws rds wait db-*-available` per database); understudy's "
          f"sleep and wake do not wait: its state machines' wait loops call `status`, {status_calls} calls a poll "
          f"(the status row). Without its waits the script makes {bare}.")
    per_call = " / ".join(f"{r['phase']} +{r['script_calls'] * start_s:.0f} s" for r in rows)
    print(f"script wall s is boto3 in one process; as bash, each `aws` command is a new process: python + boto3 + "
          f"a client takes {start_s:.2f} s here (a lower bound for the CLI), so the bash script adds at least "
          f"{per_call}.")
    f = findings
    mins = ", ".join(f"{n} at min {m}" for m, n in f["min_capacities_left"].items()) or "none"
    print(f"the script does not restore what it never saves: Application Auto Scaling ranges - asleep, "
          f"{f['asleep_with_min_capacity_above_0']} of {f['autoscaled_services']} autoscaled services keep their "
          f"scalable target's min capacity ({mins}), so on AWS scaling would start them again (moto runs no "
          f"scaling); and tags - {f['resources_tagged_asleep']} resources carry a sleep tag, so nothing on AWS says "
          f"staging is asleep or what to wake it to: the desired counts live only in the local "
          f"{f['state_file_bytes']}-byte JSON file on the machine that ran sleep.")
    print()
    failed = False
    for name, found in checks.items():
        failed |= bool(found)
        print(f"check {name}: {'ok' if not found else f'{len(found)} problem(s)'}")
        for problem in found[:15]:
            print(f"  - {problem}")
        if len(found) > 15:
            print(f"  ... {len(found) - 15} more (see {args.output})")
    print(f"\nfull figures: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
