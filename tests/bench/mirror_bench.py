"""`make bench-mirror`: understudy's mirror against `aws s3 sync --delete` and
`rclone sync --checksum` on a local S3-compatible server (garage), in one run.

Workload (issue #4): the source holds 10,000 objects of 256 B; before each timed
run the target is rebuilt (a fresh bucket) to hold 2,000 of them with the same
size and other bytes, plus 1,000 extras, so every tool must copy 10,000 and
delete 1,000. Contenders run interleaved, each `--repeats` times (medians):
understudy's mirror with its shipped defaults, `aws s3 sync --delete`,
`rclone sync --checksum` at defaults and at `--transfers 64 --checkers 64`, and a
copy-only ceiling (`rclone copy --no-check-dest --no-traverse --transfers 256`
into an empty bucket). After every timed run `rclone check --download` counts
differences. Then a no-op resync of each tool and the reference listing time
(`rclone lsf -R --fast-list` of both buckets, concurrently). All of it twice:
with no added latency and with ~20 ms per request (10 ms each way, added by
`delay-proxy`; this kernel has no netem). Every tool talks to garage through the
proxy in both workloads, so all pay the same proxy overhead. Finally the mirror's
peak RSS on a no-op at 10k and 100k objects.

Usage: python3 tests/bench/mirror_bench.py --garage BIN --aws BIN --bin-dir DIR [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KEY_ID = "GK" + "0123456789abcdef01234567"
SECRET = "0123456789abcdef" * 4
REGION = "garage"
OBJECTS = 10_000
SIZE = 256
STALE = 2_000
EXTRAS = 1_000
BIG = 100_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Garage:
    """A single-node garage with one key allowed on every bucket it creates."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.s3_port, rpc = free_port(), free_port()
        self.config = workdir / "garage.toml"
        self.config.write_text(
            f'metadata_dir = "{workdir}/meta"\n'
            f'data_dir = "{workdir}/data"\n'
            'db_engine = "lmdb"\n'
            "replication_factor = 1\n"
            f'rpc_bind_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_public_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_secret = "{secrets.token_hex(32)}"\n'
            "[s3_api]\n"
            f's3_region = "{REGION}"\n'
            f'api_bind_addr = "127.0.0.1:{self.s3_port}"\n'
            'root_domain = ".s3.garage.localhost"\n'
        )
        self.log = open(workdir / "garage.log", "w")
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config), "server"], stdout=self.log, stderr=self.log,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        wait_for_port(self.s3_port)
        wait_for_port(rpc)
        node = ""
        for _ in range(50):
            out = self.cli("node", "id", "-q", check=False)
            node = out.strip().split("@")[0]
            if node:
                break
            time.sleep(0.2)
        self.cli("layout", "assign", "-z", "dc1", "-c", "10G", node)
        self.cli("layout", "apply", "--version", "1")
        self.cli("key", "import", "--yes", "-n", "bench", KEY_ID, SECRET)

    def cli(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [self.binary, "-c", str(self.config), *args], capture_output=True, text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)}: {result.stderr}{result.stdout}")
        return result.stdout

    def bucket(self, name: str) -> str:
        self.cli("bucket", "create", name)
        self.cli("bucket", "allow", "--read", "--write", "--owner", name, "--key", KEY_ID)
        return name

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Proxy:
    def __init__(self, binary: Path, upstream: int, delay_ms: int, workdir: Path):
        self.port = free_port()
        self.log = open(workdir / f"proxy-{delay_ms}.log", "w")
        self.process = subprocess.Popen(
            [str(binary), "--listen", f"127.0.0.1:{self.port}", "--upstream", f"127.0.0.1:{upstream}",
             "--delay-ms", str(delay_ms), "--bucket-tag", "understudy:environment=staging"],
            stdout=self.log, stderr=self.log,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update({"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def rclone_env(port: int) -> dict[str, str]:
    env = clean_env()  # rclone 1.60 fails with AWS_CA_BUNDLE set: it is not.
    env.update({
        "RCLONE_CONFIG_G_TYPE": "s3", "RCLONE_CONFIG_G_PROVIDER": "Other",
        "RCLONE_CONFIG_G_ACCESS_KEY_ID": KEY_ID, "RCLONE_CONFIG_G_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_G_REGION": REGION, "RCLONE_CONFIG_G_ENDPOINT": f"http://127.0.0.1:{port}",
        "RCLONE_CONFIG_G_FORCE_PATH_STYLE": "true",
    })
    return env


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB, from GNU time) and stdout of one command; fails loudly."""
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-f", "RSS %M", *command], capture_output=True, text=True, env=env)
    seconds = time.monotonic() - started
    rss = 0
    for line in result.stderr.splitlines():
        if line.startswith("RSS "):
            rss = int(line.split()[1])
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({result.returncode}): {result.stderr[-2000:]}")
    return seconds, rss, result.stdout


def write_files(directory: Path, keys: list[str], seed: int) -> None:
    rng = random.Random(seed)
    for key in keys:
        path = directory / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(SIZE))


def upload(directory: Path, bucket: str, port: int) -> None:
    subprocess.run(
        ["rclone", "copy", str(directory), f"G:{bucket}", "--transfers", "64", "--checkers", "64",
         "--no-check-dest", "--no-traverse", "-q"],
        check=True, env=rclone_env(port),
    )


def differences(source: str, target: str, port: int, workdir: Path) -> int:
    combined = workdir / "check.txt"
    subprocess.run(
        ["rclone", "check", "--download", "--checkers", "64", "--combined", str(combined), "-q",
         f"G:{source}", f"G:{target}"],
        env=rclone_env(port), capture_output=True,
    )
    return sum(1 for line in combined.read_text().splitlines() if line and not line.startswith("= "))


def listing_time(source: str, target: str, port: int) -> float:
    env = rclone_env(port)
    started = time.monotonic()
    processes = [
        subprocess.Popen(["rclone", "lsf", "-R", "--fast-list", "-q", f"G:{b}"], stdout=subprocess.DEVNULL, env=env)
        for b in (source, target)
    ]
    for p in processes:
        if p.wait() != 0:
            raise RuntimeError("rclone lsf failed")
    return time.monotonic() - started


def contenders(args: argparse.Namespace) -> dict[str, callable]:
    def mirror(source: str, target: str, port: int) -> list[str]:
        request = {"action": "mirror", "source": {"bucket": source}, "target": {"bucket": target}}
        return [str(args.bin_dir / "mirror-cli"), json.dumps(request)]

    def aws(source: str, target: str, port: int) -> list[str]:
        return [args.aws, "s3", "sync", "--delete", "--only-show-errors", f"s3://{source}", f"s3://{target}",
                "--endpoint-url", f"http://127.0.0.1:{port}"]

    def rclone(*flags: str):
        return lambda source, target, port: ["rclone", "sync", "--checksum", *flags, "-q", f"G:{source}", f"G:{target}"]

    def ceiling(source: str, target: str, port: int) -> list[str]:
        return ["rclone", "copy", "--no-check-dest", "--no-traverse", "--transfers", "256", "-q",
                f"G:{source}", f"G:{target}"]

    return {
        "understudy mirror (defaults)": mirror,
        "aws s3 sync --delete": aws,
        "rclone sync --checksum": rclone(),
        "rclone sync --checksum 64/64": rclone("--transfers", "64", "--checkers", "64"),
        "copy-only ceiling (rclone copy 256)": ceiling,
    }


def environment_for(tool: str, port: int) -> dict[str, str]:
    env = rclone_env(port)
    if tool.startswith("understudy"):
        env.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "RUST_LOG": "warn"})
    return env


def run_workload(name: str, args, garage: Garage, proxy: Proxy, seed_dir: Path, workdir: Path) -> dict:
    tools = contenders(args)
    results: dict[str, dict] = {tool: {"seconds": [], "differences": [], "rss_kib": []} for tool in tools}
    counter = 0
    last_target: dict[str, str] = {}
    for repeat in range(args.repeats):
        for tool, command in tools.items():
            counter += 1
            target = garage.bucket(f"{slug(name)}-{counter:03d}")
            if not tool.startswith("copy-only"):
                upload(seed_dir, target, garage.s3_port)
            env = environment_for(tool, proxy.port)
            seconds, rss, out = timed(command("src", target, proxy.port), env)
            diff = differences("src", target, garage.s3_port, workdir)
            results[tool]["seconds"].append(seconds)
            results[tool]["differences"].append(diff)
            results[tool]["rss_kib"].append(rss)
            last_target[tool] = target
            log(f"{name} run {repeat + 1}: {tool}: {seconds:.2f} s, {diff} differences, {rss / 1024:.1f} MB {out.strip()[:200]}")
    for tool, command in tools.items():
        if tool.startswith("copy-only"):
            continue
        target = last_target[tool]
        seconds, rss, _ = timed(command("src", target, proxy.port), environment_for(tool, proxy.port))
        results[tool]["noop_seconds"] = seconds
        results[tool]["noop_rss_kib"] = rss
        log(f"{name} no-op: {tool}: {seconds:.2f} s")
    reference = [listing_time("src", last_target["understudy mirror (defaults)"], proxy.port) for _ in range(3)]
    log(f"{name} reference listing: {statistics.median(reference):.2f} s")
    return {"tools": results, "listing_seconds": statistics.median(reference)}


def peak_rss(args, garage: Garage, proxy: Proxy, workdir: Path, source_dir_10k: Path) -> dict:
    """The mirror's peak RSS on a no-op at 10k and 100k objects."""
    out = {}
    big_dir = workdir / "big"
    write_files(big_dir, [f"data/{i:06d}.bin" for i in range(BIG)], seed=7)
    for label, source, directory in (("10k", "rss10k", source_dir_10k), ("100k", "rss100k", big_dir)):
        garage.bucket(source)
        upload(directory, source, garage.s3_port)
        target = garage.bucket(f"{source}-t")
        env = environment_for("understudy", proxy.port)
        request = json.dumps({"action": "mirror", "source": {"bucket": source}, "target": {"bucket": target}})
        timed([str(args.bin_dir / "mirror-cli"), request], env)
        seconds, rss, answer = timed([str(args.bin_dir / "mirror-cli"), request], env)
        out[label] = {"rss_kib": rss, "seconds": seconds, "answer": json.loads(answer)}
        log(f"peak RSS, no-op at {label}: {rss / 1024:.1f} MB in {seconds:.2f} s")
    return out


def table(report: dict) -> str:
    rows = ["| workload | tool | median s | objects/s | differences | peak RSS MB | ratio |", "|---|---|---|---|---|---|---|"]
    for workload, data in report["workloads"].items():
        tools = data["tools"]
        ceiling = statistics.median(tools["copy-only ceiling (rclone copy 256)"]["seconds"])
        rclone64 = statistics.median(tools["rclone sync --checksum 64/64"]["seconds"])
        for tool, r in tools.items():
            median = statistics.median(r["seconds"])
            if workload.startswith("no added"):
                ratio = f"ceiling/this {ceiling / median:.2f}"
            else:
                ratio = f"vs rclone 64/64 {rclone64 / median:.2f}x"
            rows.append(
                f"| {workload}: full mirror | {tool} | {median:.2f} | {OBJECTS / median:,.0f} | "
                f"{max(r['differences'])} | {max(r['rss_kib']) / 1024:.1f} | {ratio} |"
            )
        for tool, r in tools.items():
            if "noop_seconds" in r:
                rows.append(
                    f"| {workload}: no-op resync | {tool} | {r['noop_seconds']:.2f} | - | - | "
                    f"{r['noop_rss_kib'] / 1024:.1f} | listing x{r['noop_seconds'] / data['listing_seconds']:.2f} |"
                )
        rows.append(
            f"| {workload}: reference listing | rclone lsf -R --fast-list (both buckets) | "
            f"{data['listing_seconds']:.2f} | - | - | - | 1.00 |"
        )
    for label, r in report.get("peak_rss", {}).items():
        rows.append(f"| no-op, {label} objects | understudy mirror | {r['seconds']:.2f} | - | - | {r['rss_kib'] / 1024:.1f} | - |")
    return "\n".join(rows)


def verdicts(report: dict) -> str:
    lines = []
    plain = report["workloads"].get("no added latency")
    slow = report["workloads"].get("20 ms latency")
    mirror = "understudy mirror (defaults)"
    if plain:
        t = plain["tools"]
        ratio = statistics.median(t["copy-only ceiling (rclone copy 256)"]["seconds"]) / statistics.median(t[mirror]["seconds"])
        lines.append(f"full mirror, no added latency: ceiling/mirror = {ratio:.2f} (target >= 0.95), differences {max(t[mirror]['differences'])} (target 0)")
        noop = t[mirror]["noop_seconds"] / plain["listing_seconds"]
        lines.append(f"no-op resync: mirror / reference listing = {noop:.2f} (target <= 1.2)")
    if slow:
        t = slow["tools"]
        ratio = statistics.median(t["rclone sync --checksum 64/64"]["seconds"]) / statistics.median(t[mirror]["seconds"])
        lines.append(f"full mirror, 20 ms latency: mirror throughput = {ratio:.2f}x rclone 64/64 (target >= 1.0), differences {max(t[mirror]['differences'])}")
        noop = t[mirror]["noop_seconds"] / slow["listing_seconds"]
        lines.append(f"no-op resync at 20 ms: mirror / reference listing = {noop:.2f} (target <= 1.2)")
    rss = report.get("peak_rss")
    if rss:
        small, big = rss["10k"]["rss_kib"] / 1024, rss["100k"]["rss_kib"] / 1024
        lines.append(f"peak RSS, no-op: {big:.1f} MB at 100k (target <= 64), {big - small:+.1f} MB vs 10k (target <= +8)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--garage", required=True)
    parser.add_argument("--aws", required=True)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--output", type=Path, default=Path(".local/bench-mirror.json"))
    args = parser.parse_args()
    for tool in ("rclone", "/usr/bin/time", args.garage, args.aws):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    workdir = Path(tempfile.mkdtemp(prefix="understudy-bench-"))
    log(f"work dir {workdir}")
    garage = Garage(args.garage, workdir)
    proxies = []
    try:
        keys = [f"data/{i:05d}.bin" for i in range(OBJECTS)]
        source_dir, seed_dir = workdir / "source", workdir / "seed"
        write_files(source_dir, keys, seed=1)
        # 2,000 of the source's keys with the same size and other bytes, and 1,000 extras.
        write_files(seed_dir, keys[::OBJECTS // STALE], seed=2)
        write_files(seed_dir, [f"data/{i:05d}.old" for i in range(0, OBJECTS, OBJECTS // EXTRAS)], seed=3)
        garage.bucket("src")
        upload(source_dir, "src", garage.s3_port)
        log(f"source: {OBJECTS} objects of {SIZE} B; seed: {STALE} stale + {EXTRAS} extras")
        report = {"workloads": {}}
        for name, delay in (("no added latency", 0), (f"{args.latency_ms} ms latency", args.latency_ms // 2)):
            proxy = Proxy(args.bin_dir / "delay-proxy", garage.s3_port, delay, workdir)
            proxies.append(proxy)
            report["workloads"][name] = run_workload(name, args, garage, proxy, seed_dir, workdir)
        if not args.skip_rss:
            report["peak_rss"] = peak_rss(args, garage, proxies[0], workdir, source_dir)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2))
        print(table(report))
        print()
        print(verdicts(report))
        return 0
    finally:
        for proxy in proxies:
            proxy.stop()
        garage.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
