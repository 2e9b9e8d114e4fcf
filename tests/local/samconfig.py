"""samconfig.toml, read as `sam deploy --config-env <name>` reads it: each environment's
template and parameter overrides.

- `parameters(env)`: the `Key=Value` overrides of `[<env>.deploy.parameters]`, as a dict;
- `template(env)`: the template that environment deploys (its `template_file`, else what
  `sam build` built from `[default.build.parameters]`' template);
- `python tests/local/samconfig.py --lint <cfn-lint>`: cfn-lint on each environment's
  template with that environment's parameters (make validate).

The local deployer (deploy.py) deploys an environment's parameters with
`POST /understudy/deploy {"config_env": "<name>"}`.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMCONFIG = ROOT / "samconfig.toml"


class SamConfigError(ValueError):
    pass


def load(path: Path = SAMCONFIG) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


def environments(config: dict[str, Any] | None = None) -> list[str]:
    """The environments that deploy (have a `deploy.parameters` table), in file order."""
    config = load() if config is None else config
    return [name for name, table in config.items()
            if isinstance(table, dict) and isinstance(table.get("deploy"), dict)]


def _deploy_table(env: str, config: dict[str, Any]) -> dict[str, Any]:
    table = config.get(env)
    if not isinstance(table, dict) or not isinstance(table.get("deploy"), dict):
        raise SamConfigError(f"samconfig.toml has no [{env}.deploy.parameters] (environments: {environments(config)})")
    return table["deploy"].get("parameters") or {}


def parameters(env: str, config: dict[str, Any] | None = None) -> dict[str, str]:
    """`parameter_overrides` as sam reads it: a list of `Key=Value` strings, or one string of
    them separated by spaces (values may be quoted)."""
    config = load() if config is None else config
    overrides = _deploy_table(env, config).get("parameter_overrides", [])
    items = shlex.split(overrides) if isinstance(overrides, str) else list(overrides)
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise SamConfigError(f"[{env}.deploy.parameters] parameter_overrides: {item!r} is not Key=Value")
        if key in values:
            raise SamConfigError(f"[{env}.deploy.parameters] parameter_overrides: {key} is given twice")
        values[key] = value
    return values


def template(env: str, config: dict[str, Any] | None = None) -> Path:
    """The template `sam deploy --config-env <env>` deploys, as its source (the built copy
    of `[default.build.parameters] template_file` when the environment names none)."""
    config = load() if config is None else config
    own = _deploy_table(env, config).get("template_file")
    if own is None:
        own = ((config.get("default") or {}).get("build") or {}).get("parameters", {}).get("template_file")
    if own is None:
        raise SamConfigError(f"[{env}] names no template and [default.build.parameters] none to build")
    return ROOT / str(own)


def lint(cfn_lint: str) -> int:
    config = load()
    for env in environments(config):
        pairs = [f"{k}={v}" for k, v in parameters(env, config).items()]
        command = [cfn_lint, "--parameters", *pairs, "--", str(template(env, config).relative_to(ROOT))]
        print(f"cfn-lint, config env {env}: {len(pairs)} parameters", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lint", metavar="CFN_LINT", required=True, help="cfn-lint each environment")
    sys.exit(lint(parser.parse_args().lint))
