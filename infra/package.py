"""make package's last step: zip each function that `sam build` built and print its size.

Reads the built template (.aws-sam/build/template.yaml) for the functions and their
build directories, writes .aws-sam/zips/<binary>.zip (bootstrap, deflated, as sam deploy
uploads it), and exits 1 when a function is missing or a zip is over the limit.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

LIMIT_BYTES = 6 * 1024 * 1024


def functions(built: Path) -> dict[str, Path]:
    """Each AWS::Serverless::Function's binary name and build directory, read with a plain
    line scan (the built template keeps the source's YAML tags, which no stdlib parser reads)."""
    found: dict[str, Path] = {}
    logical = code = binary = None
    for line in built.read_text().splitlines():
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            if logical and code and binary:
                found[binary] = built.parent / code
            logical, code, binary = stripped[:-1], None, None
        elif stripped.startswith("CodeUri:"):
            code = stripped.split(":", 1)[1].strip().strip("'\"")
        elif stripped.startswith("Binary:"):
            binary = stripped.split(":", 1)[1].strip().strip("'\"")
    if logical and code and binary:
        found[binary] = built.parent / code
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--built", type=Path, default=Path(".aws-sam/build/template.yaml"))
    parser.add_argument("--out", type=Path, default=Path(".aws-sam/zips"))
    parser.add_argument("--expect", nargs="+", required=True, help="every binary that must be there")
    args = parser.parse_args()
    built = functions(args.built)
    missing = sorted(set(args.expect) - set(built))
    if missing:
        print(f"package: {args.built} has no built function for {missing}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    print(f"{'function':<16}{'bootstrap':>12}{'zip':>12}")
    for binary in sorted(built):
        bootstrap = built[binary] / "bootstrap"
        if not bootstrap.is_file():
            print(f"package: {bootstrap} was not built", file=sys.stderr)
            return 1
        target = args.out / f"{binary}.zip"
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, bootstrap.read_bytes(), compresslevel=9)
        size = target.stat().st_size
        over = size > LIMIT_BYTES
        failed |= over
        note = f"  over {LIMIT_BYTES // (1024 * 1024)} MiB" if over else ""
        print(f"{binary:<16}{bootstrap.stat().st_size / 1048576:>10.2f}Mi{size / 1048576:>10.2f}Mi{note}")
    print(f"zips in {args.out}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
