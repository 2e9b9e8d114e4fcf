"""Database status overrides: a test-only way to make staging's databases show a status
that needs an operator (`incompatible-parameters`, `incompatible-restore`, `failed`,
`storage-full`, ...), which moto never reaches by itself.

`POST /understudy/rds/status-override {"account", "region", "kind": "instance" |
"cluster", "identifier_prefix", "status"}` on the invoke host makes DescribeDBInstances
(`instance`: RDS instances and Aurora clusters' member instances alike) or
DescribeDBClusters (`cluster`) show `status` (DBInstanceStatus / Status) for every
database of that kind in that account and Region whose identifier starts with
`identifier_prefix` (case-insensitively), whether it exists now or is created (restored,
renamed) later. account and region default to staging's and the stack's. The answer is
the override, `{"id", "account", "region", "kind", "identifier_prefix", "status"}`;
`GET` answers `{"overrides": [...]}`, `DELETE` clears them all (`{"overrides": []}`).
When several overrides match a database, the one added last wins.

Only the describe responses change: moto keeps the database's real status, and every
other call (ModifyDB*, DeleteDB*, the fidelity patches' state checks, the create and
restore answers) sees that one. A transition held by the slow polls (slow_transitions)
keeps running underneath: each describe still counts as one of its polls, but the
override is what it shows; once the overrides are cleared, the database shows the status
its transition has reached by then.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response

from slow_transitions import _patch

STAGING = "123456789012"
# kind -> (RDSResponse action, result list, identifier attribute)
KINDS = {
    "instance": ("describe_db_instances", "DBInstances", "db_instance_identifier"),
    "cluster": ("describe_db_clusters", "DBClusters", "db_cluster_identifier"),
}

_lock = threading.Lock()
_overrides: list[dict[str, Any]] = []
_ids = itertools.count(1)
_installed = False


def add_override(account: str, region: str, kind: str, identifier_prefix: str, status: str) -> dict[str, Any]:
    override = {"id": next(_ids), "account": account, "region": region, "kind": kind,
                "identifier_prefix": identifier_prefix, "status": status}
    with _lock:
        _overrides.append(override)
    return dict(override)


def clear_overrides() -> None:
    with _lock:
        _overrides.clear()


def overrides() -> list[dict[str, Any]]:
    with _lock:
        return [dict(override) for override in _overrides]


def status_for(kind: str, account: str, region: str, identifier: Any) -> str | None:
    """The status to show for a database, or None for its own."""
    if not isinstance(identifier, str):
        return None
    with _lock:
        for override in reversed(_overrides):
            if (
                (override["kind"], override["account"], override["region"]) == (kind, account, region)
                and identifier.lower().startswith(override["identifier_prefix"].lower())
            ):
                return override["status"]
    return None


def install_for(service: str) -> None:
    """Patches moto's RDS describe responses when moto builds the RDS app. Installed
    after slow_transitions' patches, it runs outside them: it sees what they show."""
    global _installed
    if service == "rds" and not _installed:
        _installed = True
        _patch_describes()


def _patch_describes() -> None:
    from moto.rds.responses import RDSResponse

    for kind, (action, key, attribute) in KINDS.items():

        @_patch(RDSResponse, action)
        def overridden(original: Callable, response: Any, kind: str = kind, key: str = key,
                       attribute: str = attribute) -> Any:
            result = original(response)
            shown = []
            for database in result.result[key]:
                status = status_for(kind, response.current_account, response.region, getattr(database, attribute, None))
                if status is not None:
                    # A copy answers: the stored database keeps its real status.
                    database = copy.copy(database)
                    database.status = status
                shown.append(database)
            result.result[key] = shown
            return result


def _valid(body: Any) -> bool:
    def text(value: Any) -> bool:
        return isinstance(value, str) and value != ""

    return (
        isinstance(body, dict)
        and body.get("kind") in KINDS
        and text(body.get("identifier_prefix"))
        and text(body.get("status"))
        and all(body.get(field) is None or text(body.get(field)) for field in ("account", "region"))
    )


def overrides_app(default_region: str) -> Callable:
    """POST adds an override, GET lists them, DELETE clears them all."""

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        status = 200
        if request.method == "POST":
            body = request.get_json(force=True, silent=True)
            if _valid(body):
                answer = add_override(body.get("account") or STAGING, body.get("region") or default_region,
                                      body["kind"], body["identifier_prefix"], body["status"])
            else:
                answer, status = {"message": 'expected {"account"?, "region"?, "kind": "instance"|"cluster", '
                                             '"identifier_prefix", "status"}'}, 400
        elif request.method == "DELETE":
            clear_overrides()
            answer = {"overrides": []}
        elif request.method == "GET":
            answer = {"overrides": overrides()}
        else:
            answer, status = {"message": "GET, POST or DELETE"}, 405
        return Response(json.dumps(answer), status, content_type="application/json")(environ, start_response)

    return app
