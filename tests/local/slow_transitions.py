"""Slow transitions for moto.

moto finishes snapshots, restores, starts and stops instantly, so a wait loop that
never waits would pass against it. Here a resource that enters a transitional state
keeps showing it for N *observations* (describe responses that include it) before it
shows the final state, as it would for minutes on AWS.

One mechanism does it all: `hold(obj, transitional, final)` registers attribute values
to show until N observations have passed, the describe responses call `observe(obj)`,
and small patches on moto's backends call `hold` where AWS would start a transition.
Patches are installed when moto first builds the service's app (see `install_for`),
so the launcher does not pay for importing RDS and ECS (and EC2, which they pull in)
at start-up.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from moto.core.exceptions import ServiceException
from werkzeug.wrappers import Request, Response

# A transitional value that stands for a percentage rising with each observation
# (RDS PercentProgress), reaching 100 only with the final state.
PROGRESS = object()

_lock = threading.Lock()
_polls = 2
_holds: dict[int, _Hold] = {}  # by id(obj); the hold keeps obj alive, so ids stay unique


@dataclass
class _Hold:
    obj: Any
    transitional: dict[str, Any]
    final: dict[str, Any]
    polls: int
    seen: int = 0

    def show(self) -> None:
        for attr, value in self.transitional.items():
            if value is PROGRESS:
                value = 100 * self.seen // (self.polls + 1)
            setattr(self.obj, attr, value)


def set_polls(polls: int) -> None:
    """Observations to hold transitions started from now on; 0 makes them instant."""
    global _polls
    with _lock:
        _polls = polls


def get_polls() -> int:
    return _polls


def hold(obj: Any, transitional: dict[str, Any], final: dict[str, Any]) -> None:
    with _lock:
        _holds.pop(id(obj), None)
        if _polls == 0 or transitional == final:
            _set(obj, final)
            return
        _holds[id(obj)] = entry = _Hold(obj, transitional, final, _polls)
        entry.show()


def observe(obj: Any) -> None:
    """A describe response is about to show obj: one more poll of its transition passed."""
    with _lock:
        entry = _holds.get(id(obj))
        if entry is None:
            return
        entry.seen += 1
        if entry.seen > entry.polls:
            del _holds[id(obj)]
            _set(obj, entry.final)
        else:
            entry.show()


def settle(obj: Any) -> None:
    """Ends obj's transition now."""
    with _lock:
        entry = _holds.pop(id(obj), None)
        if entry is not None:
            _set(obj, entry.final)


def is_held(obj: Any) -> bool:
    with _lock:
        return id(obj) in _holds


def _set(obj: Any, values: dict[str, Any]) -> None:
    for attr, value in values.items():
        setattr(obj, attr, value)


def _patch(cls: type, name: str) -> Callable[[Callable], Callable]:
    """Replaces cls.name by the decorated function, which receives the original first."""
    original = getattr(cls, name)

    def decorate(replacement: Callable) -> Callable:
        @functools.wraps(original)
        def patched(*args: Any, **kwargs: Any) -> Any:
            return replacement(original, *args, **kwargs)

        setattr(cls, name, patched)
        return replacement

    return decorate


def _observe_results(response_cls: type, action: str, key: str) -> None:
    """Makes every object in the `key` list of `action`'s result count as observed."""

    @_patch(response_cls, action)
    def observed(original: Callable, response: Any) -> Any:
        result = original(response)
        for obj in result.result[key]:
            observe(obj)
        return result


def _hold_result(cls: type, name: str, transitional: dict[str, Any], final: dict[str, Any]) -> None:
    """Makes the object cls.name returns go through a transition."""

    @_patch(cls, name)
    def held(original: Callable, *args: Any, **kwargs: Any) -> Any:
        obj = original(*args, **kwargs)
        hold(obj, transitional, final)
        return obj


def _refuse_held_source(cls: type, name: str, param: str, find: Callable, fault: Callable[[str], Exception]) -> None:
    """Makes cls.name refuse to start from a source (its argument `param`) in transition."""
    signature = inspect.signature(getattr(cls, name))

    @_patch(cls, name)
    def guarded(original: Callable, backend: Any, *args: Any, **kwargs: Any) -> Any:
        identifier = signature.bind(backend, *args, **kwargs).arguments[param]
        try:
            source = find(backend, identifier)
        except ServiceException:
            source = None  # moto's own lookup reports the missing source
        if source is not None and is_held(source):
            raise fault(f"Snapshot {identifier} is {source.status}, not available.")
        return original(backend, *args, **kwargs)


def _patch_rds() -> None:
    from moto.rds.exceptions import InvalidDBClusterSnapshotStateFault, RDSClientError
    from moto.rds.models import DBCluster, RDSBackend
    from moto.rds.responses import RDSResponse

    # moto turns a new cluster from "creating" to "available" on the first read of its
    # status, even an internal one; the hold on create_db_cluster drives it instead.
    DBCluster.status = property(lambda cluster: cluster._status, DBCluster.status.fset)

    # AWS: a snapshot is "creating" (a copy "copying") with PercentProgress rising for
    # minutes, then "available" at 100.
    for name, status in (
        ("create_db_cluster_snapshot", "creating"),
        ("create_db_snapshot", "creating"),
        ("copy_db_cluster_snapshot", "copying"),
        ("copy_db_snapshot", "copying"),
    ):
        _hold_result(RDSBackend, name, {"status": status, "percent_progress": PROGRESS},
                     {"status": "available", "percent_progress": 100})

    # AWS takes minutes to create (moto restores through the create calls), start or
    # stop a database.
    available = {"status": "available"}
    _hold_result(RDSBackend, "create_db_cluster", {"status": "creating"}, available)
    _hold_result(RDSBackend, "create_db_instance", {"status": "creating"}, available)
    _hold_result(RDSBackend, "start_db_instance", {"status": "starting"}, available)
    _hold_result(RDSBackend, "stop_db_instance", {"status": "stopping"}, {"status": "stopped"})
    for name, status, final in (("start_db_cluster", "starting", "available"),
                                ("stop_db_cluster", "stopping", "stopped")):
        # moto answers these with a copy of the cluster: hold the stored one, and
        # answer with what it shows.
        @_patch(RDSBackend, name)
        def cluster_transition(original: Callable, backend: Any, *args: Any,
                               status: str = status, final: str = final, **kwargs: Any) -> Any:
            returned = original(backend, *args, **kwargs)
            stored = backend.clusters[returned.db_cluster_identifier]
            hold(stored, {"status": status}, {"status": final})
            returned.status = stored.status
            return returned

    # AWS copies and restores only from an "available" snapshot.
    def db_snapshot_fault(message: str) -> Exception:
        return RDSClientError("InvalidDBSnapshotState", message)

    cluster_snapshot, cluster_fault = RDSBackend.get_db_cluster_snapshot, InvalidDBClusterSnapshotStateFault
    for name, param, find, fault in (
        ("copy_db_cluster_snapshot", "source_db_cluster_snapshot_identifier", cluster_snapshot, cluster_fault),
        ("restore_db_cluster_from_snapshot", "from_snapshot_id", cluster_snapshot, cluster_fault),
        ("copy_db_snapshot", "source_db_snapshot_identifier", RDSBackend.get_db_snapshot, db_snapshot_fault),
        ("restore_db_instance_from_db_snapshot", "from_snapshot_id", RDSBackend.get_db_snapshot, db_snapshot_fault),
    ):
        _refuse_held_source(RDSBackend, name, param, find, fault)

    _observe_results(RDSResponse, "describe_db_cluster_snapshots", "DBClusterSnapshots")
    _observe_results(RDSResponse, "describe_db_snapshots", "DBSnapshots")
    _observe_results(RDSResponse, "describe_db_clusters", "DBClusters")
    _observe_results(RDSResponse, "describe_db_instances", "DBInstances")


def _patch_ecs() -> None:
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse

    def counts(service: Any) -> dict[str, int]:
        return {"running_count": service.running_count, "pending_count": service.pending_count}

    @_patch(EC2ContainerServiceBackend, "create_service")
    def create_service(original: Callable, backend: Any, *args: Any, **kwargs: Any) -> Any:
        service = original(backend, *args, **kwargs)
        shown = counts(service)
        # AWS starts desiredCount tasks; moto leaves a new service at its
        # MOTO_ECS_SERVICE_RUNNING (0) tasks for good. Book the final counts on the
        # cluster now, as moto's update_service does, so its later sums add up.
        cluster = backend._get_cluster(service.cluster_name)
        backend.update_cluster_resources(cluster, service.desired_count - service.running_count, "RUNNING")
        backend.update_cluster_resources(cluster, -service.pending_count, "PENDING")
        hold(service, shown, {"running_count": service.desired_count, "pending_count": 0})
        return service

    @_patch(EC2ContainerServiceBackend, "update_service")
    def update_service(original: Callable, backend: Any, service_properties: dict[str, Any]) -> Any:
        service = backend._get_service(
            service_properties.get("cluster", "default"), service_properties["service"].split("/")[-1]
        )
        running = service.running_count
        settle(service)  # moto's update subtracts the counts it booked, not the shown ones
        service = original(backend, service_properties)
        # AWS starts or drains tasks over a while: runningCount moves to desiredCount
        # only after some polls, pendingCount shows the tasks still starting.
        hold(service, {"running_count": running, "pending_count": max(service.desired_count - running, 0)},
             counts(service))
        return service

    _observe_results(EC2ContainerServiceResponse, "describe_services", "services")


_PATCHES = {"rds": _patch_rds, "ecs": _patch_ecs}


def install_for(service: str) -> None:
    """Patches the moto service about to get its app, if it has slow transitions."""
    patch = _PATCHES.get(service)
    if patch is not None:
        patch()


def control_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """GET reads, POST {"polls": N} sets the observations future transitions are held for."""
    request = Request(environ)
    body, status = None, 200
    if request.method == "POST":
        polls = (request.get_json(force=True, silent=True) or {}).get("polls")
        if isinstance(polls, int) and not isinstance(polls, bool) and polls >= 0:
            set_polls(polls)
        else:
            body, status = {"message": 'expected {"polls": <integer >= 0>}'}, 400
    response = Response(json.dumps(body or {"polls": get_polls()}), status, content_type="application/json")
    return response(environ, start_response)
