"""RDS rules that moto 5.2.5 does not enforce, made as strict as AWS where understudy's
refresh depends on them.

Each patch below cites the AWS behaviour it reproduces; together they make the
emulator stricter, never looser. Like slow_transitions' patches, they wrap moto's
backend methods (`_patch`: the replacement receives the original first) and are
installed when moto first builds the RDS (or KMS) app. Installed after
slow_transitions' patches, they run outside them: a refused call never starts a
transition.

- Snapshot sources (`_resolve_sources`): Copy*/Restore* find their source snapshot by
  identifier or ARN, in the caller's account or, for another account's snapshot shared
  with the caller (`restore` attribute holding the caller's account id or `all`), in
  that account. Anything else is DBClusterSnapshotNotFoundFault / DBSnapshotNotFound.
- Encryption (`_patch_encryption`, `_patch_kms`): StorageEncrypted without KmsKeyId
  uses the account's AWS-managed `alias/aws/rds` key (KeyManager AWS); KmsKeyId is
  resolved to a key ARN (another account's key ARN included); a key that does not
  exist, is disabled, or is another account's AWS-managed key is
  KMSKeyNotAccessibleFault; another account's snapshot encrypted with an AWS-managed
  key cannot be copied or restored (KMSKeyNotAccessibleFault). Restores go through
  the same resolution: a KmsKeyId (key id, alias, key or alias ARN) is resolved in the
  calling account, shown as the key ARN on the cluster and its instances, and one the
  caller cannot use is KMSKeyNotAccessibleFault (moto 5.2.5 stores the raw alias and
  accepts one that does not exist); without KmsKeyId the restore keeps the snapshot's
  key ARN, production's for a shared snapshot (moto's own behaviour, pinned by the
  self-test).
- Identifiers and renames (`_patch_identifiers`, `_patch_renames`): cluster
  identifiers are validated like instance ones (1-63 characters, ...); a name in use,
  or still held by a rename in progress, is AlreadyExists; a rename needs an
  available database and ApplyImmediately, shows `renaming` for the slow polls, and
  keeps the cluster's members.
- Copies (`_resolve_sources`): an encrypted snapshot shared from another account is
  copied only with a KmsKeyId; an unencrypted cluster snapshot cannot be encrypted by
  a copy.
- Master passwords (`_patch_passwords`): a managed master password is random and
  belongs to the master user; a snapshot captures the password, not its management.
- Aurora instances stop and start with their cluster (`_patch_member_states`);
  automated backups never block a create (`_patch_automated_backups`).
- Public access (`_patch_public_access`): a DB instance created, restored or replicated
  without PubliclyAccessible is publicly accessible, the pessimistic reading of AWS's
  defaults (public in a default VPC, or a VPC with an internet gateway; public without
  a subnet group or with the `default` one); an explicit PubliclyAccessible is kept,
  false included.
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import re
import secrets
import threading
import uuid
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response

from slow_transitions import _patch, hold, is_held

log = logging.getLogger("understudy.rds")

_installed: set[str] = set()

_IDENTIFIER = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,62}(?<!-)$")

# A rename in progress keeps its old identifier taken: (account, region, kind, old id) -> database.
_renames: dict[tuple[str, str, str, str], Any] = {}
_renames_lock = threading.Lock()

# Snapshots Copy*/Restore* resolved before moto's own lookup runs, by the token moto is
# handed instead of the identifier (see _resolve_sources).
_sources = threading.local()


def install_for(service: str) -> None:
    """Patches the moto service about to get its app, if it has rules here."""
    if service == "kms":
        _install("kms", _patch_kms)
    elif service == "rds":
        # RDS encrypts with KMS keys and keeps managed passwords in Secrets Manager.
        _install("kms", _patch_kms)
        _install("rds", _patch_rds)


def _install(name: str, patch: Callable[[], None]) -> None:
    if name not in _installed:
        _installed.add(name)
        patch()


def _patch_rds() -> None:
    _patch_encryption()
    _resolve_sources()
    _patch_identifiers()
    _patch_renames()
    _patch_passwords()
    _patch_automated_backups()
    _patch_member_states()
    _patch_public_access()


# --- KMS ---------------------------------------------------------------------------


def _patch_kms() -> None:
    from moto.kms.models import KmsBackend

    # AWS creates an AWS-managed key (alias/aws/rds, alias/aws/s3, ...) in an account
    # the first time a service needs it; kms:DescribeKey reports `KeyManager: AWS`.
    # moto creates it on first use too, but as a customer-managed key.
    @_patch(KmsBackend, "_generate_default_keys")
    def aws_managed(original: Callable, backend: Any, alias_name: str) -> str | None:
        key_id = original(backend, alias_name)
        if key_id is not None:
            key = backend.keys[key_id]
            key.key_manager = "AWS"
            service = alias_name.removeprefix("alias/aws/")
            key.description = f"Default key that protects my {service} resources when no other key is defined"
        return key_id


def aws_managed_rds_key(account_id: str, region: str) -> Any:
    """The account's `alias/aws/rds` key, created (AWS-managed) on first use as on AWS."""
    from moto.kms.models import kms_backends

    return kms_backends[account_id][region].describe_key("alias/aws/rds")


def _find_key(key_id: str, account_id: str, region: str) -> Any | None:
    """The KMS key a key id, key ARN, alias name or alias ARN names, from the point of
    view of account_id in region (ARNs name their own account), or None."""
    from moto.kms.models import kms_backends

    name = key_id
    if key_id.startswith("arn:"):
        parts = key_id.split(":", 5)
        if len(parts) != 6 or parts[2] != "kms":
            return None
        region, account_id, resource = parts[3], parts[4], parts[5]
        name = resource if resource.startswith("alias/") else resource.removeprefix("key/")
    try:
        return kms_backends[account_id][region].describe_key(name)
    except (KeyError, AttributeError, TypeError):  # moto's lookups fail in all three ways
        return None


def resolve_kms_key(backend: Any, key_id: str) -> Any:
    """The key RDS uses for a KmsKeyId given in backend's account and region.

    AWS: the key must exist in the request's region, be enabled, and be usable by the
    caller; an AWS-managed key can only be used by its own account (its key policy
    cannot be changed). Otherwise RDS answers KMSKeyNotAccessibleFault, where moto
    5.2.5 answers a missing alias with a 500."""
    from moto.rds.exceptions import KMSKeyNotAccessibleFault

    key = _find_key(key_id, backend.account_id, backend.region_name)
    if (
        key is None
        or key.region != backend.region_name
        or key.key_state != "Enabled"
        or (key.account_id != backend.account_id and key.key_manager == "AWS")
    ):
        raise KMSKeyNotAccessibleFault(key_id)
    return key


def _patch_encryption() -> None:
    from moto.rds.models import RDSBackend

    # Every KmsKeyId RDS takes goes through one resolution (copies call this one).
    @_patch(RDSBackend, "_validate_kms_key")
    def validate_kms_key(original: Callable, backend: Any, kms_key_id: str) -> str:
        return resolve_kms_key(backend, kms_key_id).arn

    def encrypt(backend: Any, kwargs: Any) -> bool:
        """AWS: with StorageEncrypted and no KmsKeyId, RDS uses the account's AWS-managed
        key `aws/rds`; a KmsKeyId (id, ARN, alias) is stored as its key ARN and makes the
        storage encrypted (a restore "is encrypted with the KMS key identified by
        KmsKeyId"). moto stores the placeholder "default_kms_key_id" or the raw id."""
        key_id = kwargs.get("kms_key_id")
        if key_id:
            kwargs["kms_key_id"] = resolve_kms_key(backend, key_id).arn
            kwargs["storage_encrypted"] = True
        elif kwargs.get("storage_encrypted"):
            kwargs["kms_key_id"] = aws_managed_rds_key(backend.account_id, backend.region_name).arn
        return bool(kwargs.get("storage_encrypted"))

    # moto restores through the create calls, so restores are covered too.
    @_patch(RDSBackend, "create_db_cluster")
    def create_db_cluster(original: Callable, backend: Any, kwargs: Any) -> Any:
        encrypted = encrypt(backend, kwargs)
        cluster = original(backend, kwargs)
        if not encrypted:
            cluster.kms_key_id = None  # AWS shows no KmsKeyId on an unencrypted cluster
        return cluster

    @_patch(RDSBackend, "create_db_instance")
    def create_db_instance(original: Callable, backend: Any, db_kwargs: Any) -> Any:
        # A cluster's instances are encrypted with the cluster's key.
        if db_kwargs.get("db_cluster_identifier") is None:
            encrypt(backend, db_kwargs)
        return original(backend, db_kwargs)


# --- snapshot sources --------------------------------------------------------------


def _snapshot_kinds() -> dict[str, tuple[str, str, type]]:
    from moto.rds.exceptions import DBClusterSnapshotNotFoundError, DBSnapshotNotFoundFault

    # kind -> (ARN resource type, backend attribute, not-found fault)
    return {
        "cluster": ("cluster-snapshot", "cluster_snapshots", DBClusterSnapshotNotFoundError),
        "instance": ("snapshot", "database_snapshots", DBSnapshotNotFoundFault),
    }


def find_source_snapshot(backend: Any, identifier: str, kind: str) -> Any:
    """The snapshot a Copy*/Restore* call in backend's account names as its source.

    AWS: a snapshot of the caller's own account is named by identifier or ARN; another
    account's snapshot only by ARN, and only once that account shared it with the
    caller (`restore` attribute with the caller's account id, or `all`); otherwise the
    snapshot is not found. moto 5.2.5 looks every ARN up in the caller's account.
    A snapshot encrypted with another account's AWS-managed key (aws/rds) can be
    shared but not used: its copy or restore fails with KMSKeyNotAccessibleFault."""
    from moto.rds.exceptions import KMSKeyNotAccessibleFault
    from moto.rds.models import rds_backends

    resource_type, attribute, not_found = _snapshot_kinds()[kind]
    owner, region, name = backend.account_id, backend.region_name, identifier
    if identifier.startswith("arn:"):
        parts = identifier.split(":", 6)
        if len(parts) != 7 or parts[2] != "rds" or parts[5] != resource_type:
            raise not_found(identifier)
        region, owner, name = parts[3], parts[4], parts[6]
    try:
        snapshot = getattr(rds_backends[owner][region], attribute).get(name)
    except KeyError:  # not a Region moto knows
        snapshot = None
    if snapshot is None:
        raise not_found(identifier)
    if owner != backend.account_id:
        shared_with = snapshot.attributes["restore"]
        if backend.account_id not in shared_with and "all" not in shared_with:
            raise not_found(identifier)
        key = _find_key(snapshot.kms_key_id, owner, region) if snapshot.kms_key_id else None
        if snapshot.encrypted and (key is None or key.key_manager == "AWS"):
            raise KMSKeyNotAccessibleFault(snapshot.kms_key_id)
    return snapshot


def _resolved_source(identifier: Any) -> Any | None:
    return getattr(_sources, "by_token", {}).get(identifier)


def _resolve_sources() -> None:
    from moto.rds.exceptions import InvalidParameterCombination, InvalidParameterValue
    from moto.rds.models import RDSBackend

    # moto's lookups answer with the snapshot resolved for this call (this thread) when
    # handed its token, so its own copy and restore code runs unchanged on it.
    @_patch(RDSBackend, "get_snapshot")
    def get_snapshot(original: Callable, backend: Any, identifier: str, *args: Any, **kwargs: Any) -> Any:
        resolved = _resolved_source(identifier)
        return resolved if resolved is not None else original(backend, identifier, *args, **kwargs)

    for name, param in (("describe_db_snapshots", "db_snapshot_identifier"),
                        ("describe_db_cluster_snapshots", "db_snapshot_identifier")):
        signature = inspect.signature(getattr(RDSBackend, name))

        @_patch(RDSBackend, name)
        def describe(original: Callable, backend: Any, *args: Any,
                     signature: inspect.Signature = signature, param: str = param, **kwargs: Any) -> Any:
            resolved = _resolved_source(signature.bind(backend, *args, **kwargs).arguments.get(param))
            return [resolved] if resolved is not None else original(backend, *args, **kwargs)

    def copy_checks(snapshot: Any, backend: Any, arguments: dict[str, Any], kind: str) -> None:
        kms_key_id = arguments.get("kms_key_id")
        # AWS (CopyDBSnapshot, CopyDBClusterSnapshot, KmsKeyId): "If you copy an
        # encrypted DB snapshot that is shared from another AWS account, then you must
        # specify a value for KmsKeyId."
        if snapshot.encrypted and not kms_key_id and snapshot.account_id != backend.account_id:
            raise InvalidParameterValue(
                "KmsKeyId is required to copy an encrypted snapshot shared from another account."
            )
        # AWS (CopyDBClusterSnapshot, KmsKeyId): "If you copy an unencrypted DB cluster
        # snapshot and specify a value for the KmsKeyId parameter, an error is returned."
        if kind == "cluster" and kms_key_id and not snapshot.encrypted:
            raise InvalidParameterCombination("Cannot specify KmsKeyId to copy an unencrypted DB cluster snapshot.")

    def restore_checks(snapshot: Any, backend: Any, arguments: dict[str, Any], kind: str) -> None:
        overrides = arguments["overrides"]
        # AWS (RestoreDBClusterFromSnapshot, KmsKeyId): with a KmsKeyId "the restored
        # DB cluster is encrypted with the KMS key identified by the KmsKeyId".
        if overrides.get("kms_key_id"):
            overrides["storage_encrypted"] = True

    for name, param, kind, checks in (
        ("copy_db_cluster_snapshot", "source_db_cluster_snapshot_identifier", "cluster", copy_checks),
        ("copy_db_snapshot", "source_db_snapshot_identifier", "instance", copy_checks),
        ("restore_db_cluster_from_snapshot", "from_snapshot_id", "cluster", restore_checks),
        ("restore_db_instance_from_db_snapshot", "from_snapshot_id", "instance", restore_checks),
    ):
        signature = inspect.signature(getattr(RDSBackend, name))

        @_patch(RDSBackend, name)
        def resolved(original: Callable, backend: Any, *args: Any, signature: inspect.Signature = signature,
                     param: str = param, kind: str = kind, checks: Callable = checks, **kwargs: Any) -> Any:
            bound = signature.bind(backend, *args, **kwargs)
            snapshot = find_source_snapshot(backend, bound.arguments[param], kind)
            checks(snapshot, backend, bound.arguments, kind)
            token = f"understudy-source-{uuid.uuid4().hex}"
            bound.arguments[param] = token
            previous = getattr(_sources, "by_token", {})
            _sources.by_token = {**previous, token: snapshot}
            try:
                return original(*bound.args, **bound.kwargs)
            finally:
                _sources.by_token = previous


# --- identifiers and renames ---------------------------------------------------------


def _invalid_identifier(parameter: str) -> Exception:
    from moto.rds.exceptions import InvalidParameterValue

    return InvalidParameterValue(
        f"The parameter {parameter} is not a valid identifier. Identifiers must begin with a letter; "
        "must contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or "
        "contain two consecutive hyphens."
    )


def validate_identifier(identifier: str, parameter: str) -> None:
    """AWS (CreateDBCluster, RestoreDBClusterFromSnapshot, ModifyDBCluster ...): an
    identifier "must contain from 1 to 63 letters, numbers, or hyphens; first character
    must be a letter; can't end with a hyphen or contain two consecutive hyphens".
    moto checks this for DB instances only, and not for NewDBInstanceIdentifier."""
    if not isinstance(identifier, str) or not _IDENTIFIER.match(identifier):
        raise _invalid_identifier(parameter)


def _already_exists(kind: str, identifier: str) -> Exception:
    from moto.rds.exceptions import DBInstanceAlreadyExists, RDSClientError

    if kind == "cluster":
        return RDSClientError("DBClusterAlreadyExistsFault", f"DB Cluster {identifier} already exists")
    return DBInstanceAlreadyExists()


def renaming_from(backend: Any, kind: str, identifier: str) -> Any | None:
    """The database whose rename in progress still holds `identifier`, if any."""
    key = (backend.account_id, backend.region_name, kind, identifier.lower())
    with _renames_lock:
        database = _renames.get(key)
        if database is not None and not (is_held(database) and database.status == "renaming"):
            del _renames[key]
            database = None
    return database


def ensure_free(backend: Any, kind: str, identifier: str) -> None:
    """AWS: identifiers are unique per account and Region and kind; the old identifier
    of a database being renamed stays taken until the rename completes."""
    existing = backend.clusters if kind == "cluster" else backend.databases
    if identifier in existing or renaming_from(backend, kind, identifier) is not None:
        raise _already_exists(kind, identifier)


def _patch_identifiers() -> None:
    from moto.rds.models import RDSBackend

    # moto validates neither the cluster identifier nor that it is free: a second
    # create (or a restore) under a taken name replaced the existing cluster.
    @_patch(RDSBackend, "create_db_cluster")
    def create_db_cluster(original: Callable, backend: Any, kwargs: Any) -> Any:
        identifier = kwargs.get("db_cluster_identifier")
        validate_identifier(identifier, "DBClusterIdentifier")
        ensure_free(backend, "cluster", identifier)
        return original(backend, kwargs)

    @_patch(RDSBackend, "create_db_instance")
    def create_db_instance(original: Callable, backend: Any, db_kwargs: Any) -> Any:
        identifier = db_kwargs.get("db_instance_identifier")
        if isinstance(identifier, str):
            ensure_free(backend, "instance", identifier)
        return original(backend, db_kwargs)


def _patch_renames() -> None:
    from moto.rds.exceptions import DBClusterNotFoundError, InvalidDBClusterStateFault, RDSClientError
    from moto.rds.models import RDSBackend

    def start_rename(backend: Any, kind: str, database: Any, old: str, new: str, apply_immediately: Any) -> bool:
        """Checks a rename request; False when AWS would leave it pending."""
        parameter = "NewDBClusterIdentifier" if kind == "cluster" else "NewDBInstanceIdentifier"
        validate_identifier(new, parameter)
        # AWS (ModifyDBCluster, ModifyDBInstance): without ApplyImmediately a new
        # identifier is applied "during the next maintenance window"; the emulator's
        # windows never come, so the rename stays pending.
        if not apply_immediately:
            database.pending_modified_values = {
                "DBClusterIdentifier" if kind == "cluster" else "DBInstanceIdentifier": new.lower()
            }
            log.info("rename of %s %s to %s left pending: no ApplyImmediately", kind, old, new)
            return False
        # AWS: a stopped (or stopping, starting, creating, renaming...) database cannot
        # be modified; renaming a stopped database is InvalidDBClusterStateFault /
        # InvalidDBInstanceState.
        if database.status != "available":
            if kind == "cluster":
                raise InvalidDBClusterStateFault(
                    f"DbCluster {old} is in {database.status} state but expected it to be one of available."
                )
            raise RDSClientError("InvalidDBInstanceStateFault", f"Instance {old} is not in available state.")
        ensure_free(backend, kind, new)
        return True

    def renamed(backend: Any, kind: str, database: Any, old: str) -> None:
        """AWS: a rename takes minutes (status `renaming`); the new identifier answers
        at once, the old one stays taken until the rename completes."""
        database.pending_modified_values = None
        with _renames_lock:
            _renames[(backend.account_id, backend.region_name, kind, old.lower())] = database
        hold(database, {"status": "renaming"}, {"status": "available"})

    @_patch(RDSBackend, "modify_db_cluster")
    def modify_db_cluster(original: Callable, backend: Any, kwargs: Any) -> Any:
        old = kwargs.get("db_cluster_identifier")
        cluster = backend.clusters.get(old)
        if cluster is None:  # moto: KeyError, a 500
            raise DBClusterNotFoundError(old)
        new = kwargs.get("new_db_cluster_identifier")
        if new and not start_rename(backend, "cluster", cluster, old, new, kwargs.get("apply_immediately")):
            kwargs.pop("new_db_cluster_identifier")
            new = None
        members = cluster.members
        returned = original(backend, kwargs)
        if new:
            # AWS: the instances stay the cluster's members under its new name; moto
            # matches members by the identifier they store, so they were lost.
            for member in members:
                member.db_cluster_identifier = cluster.db_cluster_identifier
            renamed(backend, "cluster", cluster, old)
            returned.status = cluster.status  # moto answers with a copy
            returned.pending_modified_values = None
        return returned

    @_patch(RDSBackend, "modify_db_instance")
    def modify_db_instance(original: Callable, backend: Any, db_instance_identifier: str, db_kwargs: Any) -> Any:
        database = backend.describe_db_instances(db_instance_identifier)[0]
        new = db_kwargs.get("new_db_instance_identifier")
        if new and not start_rename(backend, "instance", database, db_instance_identifier, new,
                                    db_kwargs.get("apply_immediately")):
            db_kwargs.pop("new_db_instance_identifier")
            new = None
        returned = original(backend, db_instance_identifier, db_kwargs)
        if new:
            renamed(backend, "instance", returned, db_instance_identifier)
        return returned


def _patch_automated_backups() -> None:
    from moto.rds.models import RDSBackend

    # AWS keeps a database's automated backups with the database; they never block the
    # creation of another one. moto names an automated snapshot `rds:<id>-<minute>` when
    # it creates a database, so a database created (or restored) under an identifier
    # that was renamed away in the same minute failed with SnapshotAlreadyExists.
    for name, attribute in (("create_auto_snapshot", "database_snapshots"),
                            ("create_auto_cluster_snapshot", "cluster_snapshots")):

        @_patch(RDSBackend, name)
        def unique(original: Callable, backend: Any, identifier: str, snapshot_identifier: str,
                   attribute: str = attribute) -> Any:
            taken, candidate, n = getattr(backend, attribute), snapshot_identifier, 1
            while candidate in taken:
                n += 1
                candidate = f"{snapshot_identifier}-{n}"
            return original(backend, identifier, candidate)


def _patch_member_states() -> None:
    from moto.rds.models import RDSBackend

    # AWS: stopping an Aurora cluster stops its DB instances, starting it starts them
    # (each shows stopping/stopped, starting/available). moto leaves them available.
    for name, transitional, final in (("stop_db_cluster", "stopping", "stopped"),
                                      ("start_db_cluster", "starting", "available")):

        @_patch(RDSBackend, name)
        def members_follow(original: Callable, backend: Any, cluster_identifier: str,
                           transitional: str = transitional, final: str = final) -> Any:
            returned = original(backend, cluster_identifier)
            for member in backend.clusters[cluster_identifier].members:
                hold(member, {"status": transitional}, {"status": final})
            return returned


def _patch_public_access() -> None:
    from moto.rds.models import RDSBackend

    # AWS (CreateDBInstance, PubliclyAccessible) has documented the default two ways.
    # The API reference as the SDKs carry it (e.g. the Kotlin SDK's CreateDbInstanceRequest):
    # "If DBSubnetGroupName isn't specified, and PubliclyAccessible isn't specified [...]
    # If the default VPC in the target Region has an internet gateway attached to it,
    # the DB instance is public. If DBSubnetGroupName is specified, and
    # PubliclyAccessible isn't specified [...] If the subnets are part of a VPC that has
    # an internet gateway attached to it, the DB instance is public." botocore 1.44's
    # model: "If DBSubnetGroup isn't specified, PubliclyAccessible defaults to false for
    # Aurora instances and true for non-Aurora instances. If DBSubnetGroup is specified,
    # PubliclyAccessible defaults to false unless the value of DBSubnetGroup is default,
    # in which case PubliclyAccessible defaults to true." The emulator knows no internet
    # gateways (a default VPC has one), so it takes the pessimistic reading of both:
    # public whenever PubliclyAccessible is not given, Aurora instances and custom subnet
    # groups included; only an explicit false makes a database private.
    # RestoreDBInstanceFromDBSnapshot, RestoreDBInstanceToPointInTime and
    # CreateDBInstanceReadReplica: "For more information, see CreateDBInstance." moto
    # left the setting unset (no PubliclyAccessible in DescribeDBInstances), and a
    # restore or replica kept its source's, ignoring an explicit false.
    @_patch(RDSBackend, "create_db_instance")
    def create_db_instance(original: Callable, backend: Any, db_kwargs: Any) -> Any:
        # A cluster's instances too; restores and replicas are settled below.
        if db_kwargs.get("publicly_accessible") is None:
            db_kwargs["publicly_accessible"] = True
        return original(backend, db_kwargs)

    for name, param in (("restore_db_instance_from_db_snapshot", "overrides"),
                        ("restore_db_instance_to_point_in_time", "overrides"),
                        ("create_db_instance_read_replica", "db_kwargs")):
        signature = inspect.signature(getattr(RDSBackend, name))

        @_patch(RDSBackend, name)
        def as_requested(original: Callable, backend: Any, *args: Any, signature: inspect.Signature = signature,
                         param: str = param, **kwargs: Any) -> Any:
            requested = signature.bind(backend, *args, **kwargs).arguments[param].get("publicly_accessible")
            instance = original(backend, *args, **kwargs)
            instance.publicly_accessible = True if requested is None else bool(requested)
            return instance


# --- master passwords ---------------------------------------------------------------


def _patch_passwords() -> None:
    from moto.rds.models import DBClusterSnapshot, DBSnapshot, MasterUserSecret

    # AWS: with ManageMasterUserPassword, RDS generates a random password for the master
    # user and keeps {"username": <master user>, "password": ...} in the secret. moto
    # stores admin / P@55w0rd! for every database, so every managed password is alike.
    @_patch(MasterUserSecret, "_generate_secret_string")
    def secret_string(original: Callable, secret: MasterUserSecret) -> str:
        return json.dumps({"username": secret.resource.master_username, "password": secrets.token_urlsafe(24)})

    # A snapshot holds the database's data, the master password included; the
    # restored database's password is the one at snapshot time, and it is not managed
    # unless the restore asks for it. moto copies the live object, secret and all, and
    # fails to restore a snapshot of a managed-password cluster.
    for cls, attribute in ((DBClusterSnapshot, "cluster"), (DBSnapshot, "database")):

        @_patch(cls, "__init__")
        def capture(original: Callable, snapshot: Any, *args: Any, attribute: str = attribute, **kwargs: Any) -> None:
            original(snapshot, *args, **kwargs)
            database = getattr(snapshot, attribute)
            if getattr(database, "manage_master_user_password", False) and "master_user_secret" in vars(database):
                database._master_user_password = managed_password(database)
                database.manage_master_user_password = False
                del database.master_user_secret


def managed_password(database: Any) -> str | None:
    """The current password in a database's managed master secret."""
    secret = database.master_user_secret
    value = secret.secretsmanager.get_secret_value(secret.secret_arn, None, "AWSCURRENT")
    return json.loads(value.get("SecretString") or "{}").get("password")


def check_password(account_id: str, region: str, kind: str, identifier: str, username: str, password: str) -> bool | None:
    """Whether the master user and password open the database; None if it does not exist."""
    from moto.rds.models import DBInstanceClustered, rds_backends

    try:
        backend = rds_backends[account_id][region]
    except KeyError:  # not a Region moto knows
        return None
    database = (backend.clusters if kind == "cluster" else backend.databases).get(identifier)
    if database is None:
        return None
    if isinstance(database, DBInstanceClustered):
        database = database.cluster  # an Aurora instance opens with its cluster's master user
    if getattr(database, "manage_master_user_password", False) and "master_user_secret" in vars(database):
        expected = managed_password(database)
    else:
        expected = vars(database).get("_master_user_password")
    return (
        isinstance(expected, str)
        and database.master_username == username
        and hmac.compare_digest(expected.encode(), password.encode())
    )


def password_check_app(default_region: str) -> Callable:
    """POST {"account", "region", "kind": "cluster"|"instance", "identifier",
    "username", "password"} -> {"ok": bool}; 404 for a database that does not exist."""

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_json(force=True, silent=True)
        fields = ("identifier", "username", "password")
        if request.method != "POST":
            answer, status = {"message": "POST only"}, 405
        elif (
            not isinstance(body, dict)
            or body.get("kind") not in ("cluster", "instance")
            or not all(isinstance(body.get(field), str) for field in fields)
        ):
            answer, status = {"message": 'expected {"account", "region", "kind": "cluster"|"instance", '
                                         '"identifier", "username", "password"}'}, 400
        else:
            ok = check_password(
                str(body.get("account") or "123456789012"), str(body.get("region") or default_region),
                body["kind"], body["identifier"], body["username"], body["password"],
            )
            if ok is None:
                answer, status = {"message": f"no {body['kind']} {body['identifier']}"}, 404
            else:
                answer, status = {"ok": ok}, 200
        response = Response(json.dumps(answer), status, content_type="application/json")
        return response(environ, start_response)

    return app
