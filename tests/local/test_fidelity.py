"""Self-test of the launcher's RDS fidelity patches (rds_fidelity.py): each AWS rule is
shown against the running stack with boto3, production (111111111111) and staging
(123456789012) being two accounts of the one emulator, as in the refresh. Also the
database status overrides (rds_status.py, /understudy/rds/status-override).

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import json
import unittest
from typing import Any, Callable

from botocore.exceptions import ClientError

from test_stack import SharedStackTestCase

STAGING = "123456789012"
PRODUCTION = "111111111111"
ENGINE = "aurora-postgresql"


class RdsFidelityTest(SharedStackTestCase):
    def setUp(self) -> None:
        self.set_slow_polls(0)
        self.prod = self.production_client("rds")
        self.stg = self.client("rds")

    def assertFails(self, code: str, call: Callable, **kwargs: Any) -> str:
        """Asserts that call(**kwargs) fails with the AWS error code; returns the message."""
        with self.assertRaises(ClientError) as raised:
            call(**kwargs)
        self.assertEqual(raised.exception.response["Error"]["Code"], code, raised.exception.response["Error"])
        return raised.exception.response["Error"]["Message"]

    def cluster(self, rds: Any, identifier: str) -> dict[str, Any]:
        return rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]

    def instance(self, rds: Any, identifier: str) -> dict[str, Any]:
        return rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]

    def create_cluster(self, rds: Any, identifier: str, **kwargs: Any) -> dict[str, Any]:
        return rds.create_db_cluster(
            DBClusterIdentifier=identifier, Engine=ENGINE, MasterUsername=kwargs.pop("MasterUsername", "stguser"),
            MasterUserPassword=kwargs.pop("MasterUserPassword", "staging-pass-1"), **kwargs,
        )["DBCluster"]

    def create_member(self, rds: Any, cluster: str, identifier: str) -> None:
        rds.create_db_instance(
            DBInstanceIdentifier=identifier, DBClusterIdentifier=cluster, Engine=ENGINE,
            DBInstanceClass="db.serverless",
        )

    def share(self, snapshot: str, account: str = STAGING, kind: str = "cluster") -> None:
        if kind == "cluster":
            self.prod.modify_db_cluster_snapshot_attribute(
                DBClusterSnapshotIdentifier=snapshot, AttributeName="restore", ValuesToAdd=[account]
            )
        else:
            self.prod.modify_db_snapshot_attribute(
                DBSnapshotIdentifier=snapshot, AttributeName="restore", ValuesToAdd=[account]
            )

    # 1, 2: cross-account snapshots and the aws/rds rule

    def test_aws_rds_encrypted_snapshot_is_shared_but_unusable_until_copied_with_a_customer_key(self) -> None:
        prod_kms = self.production_client("kms")
        source = self.create_cluster(self.prod, "shop", MasterUsername="produser",
                                     MasterUserPassword="production-pass-1", EngineVersion="15.4",
                                     StorageEncrypted=True)
        # No KmsKeyId: the account's AWS-managed aws/rds key, as DescribeKey reports it.
        key = prod_kms.describe_key(KeyId=source["KmsKeyId"])["KeyMetadata"]
        self.assertEqual((key["KeyManager"], key["AWSAccountId"]), ("AWS", PRODUCTION))
        self.assertEqual(prod_kms.describe_key(KeyId="alias/aws/rds")["KeyMetadata"]["Arn"], source["KmsKeyId"])
        snapshot = self.prod.create_db_cluster_snapshot(
            DBClusterIdentifier="shop", DBClusterSnapshotIdentifier="shop-snap"
        )["DBClusterSnapshot"]
        self.assertEqual(snapshot["KmsKeyId"], source["KmsKeyId"])
        arn = snapshot["DBClusterSnapshotArn"]

        # Not shared yet: staging cannot see it, by ARN or by name.
        for identifier in (arn, "shop-snap"):
            self.assertFails("DBClusterSnapshotNotFoundFault", self.stg.copy_db_cluster_snapshot,
                             SourceDBClusterSnapshotIdentifier=identifier, TargetDBClusterSnapshotIdentifier="x")
        # Shared, but encrypted with production's aws/rds key: unusable in staging.
        self.share("shop-snap")
        self.assertFails("KMSKeyNotAccessibleFault", self.stg.copy_db_cluster_snapshot,
                         SourceDBClusterSnapshotIdentifier=arn, TargetDBClusterSnapshotIdentifier="x",
                         KmsKeyId="alias/aws/rds")
        self.assertFails("KMSKeyNotAccessibleFault", self.stg.restore_db_cluster_from_snapshot,
                         SnapshotIdentifier=arn, DBClusterIdentifier="x", Engine=ENGINE)

        # Production re-encrypts a copy with a customer-managed key and shares that.
        cmk = prod_kms.create_key(Description="understudy share")["KeyMetadata"]["Arn"]
        copy = self.prod.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier="shop-snap", TargetDBClusterSnapshotIdentifier="shop-snap-cmk",
            KmsKeyId=cmk, Tags=[{"Key": "understudy:managed", "Value": "true"}],
        )["DBClusterSnapshot"]
        self.assertEqual((copy["KmsKeyId"], copy["StorageEncrypted"]), (cmk, True))
        self.share("shop-snap-cmk")
        shared = self.stg.describe_db_cluster_snapshots(SnapshotType="shared", IncludeShared=True)
        self.assertIn(copy["DBClusterSnapshotArn"], [s["DBClusterSnapshotArn"] for s in shared["DBClusterSnapshots"]])

        # AWS: copying an encrypted snapshot shared from another account needs a KmsKeyId.
        self.assertFails("InvalidParameterValue", self.stg.copy_db_cluster_snapshot,
                         SourceDBClusterSnapshotIdentifier=copy["DBClusterSnapshotArn"],
                         TargetDBClusterSnapshotIdentifier="shop-in-staging")
        staging_key = self.client("kms").create_key()["KeyMetadata"]["Arn"]
        local = self.stg.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier=copy["DBClusterSnapshotArn"],
            TargetDBClusterSnapshotIdentifier="shop-in-staging", KmsKeyId=staging_key,
        )["DBClusterSnapshot"]
        self.assertTrue(local["DBClusterSnapshotArn"].startswith(f"arn:aws:rds:us-east-1:{STAGING}:"))
        self.assertEqual(
            {k: local[k] for k in ("Engine", "EngineVersion", "MasterUsername", "StorageEncrypted", "KmsKeyId")},
            {"Engine": ENGINE, "EngineVersion": "15.4", "MasterUsername": "produser",
             "StorageEncrypted": True, "KmsKeyId": staging_key},
        )
        # The shared copy can also be restored directly, by ARN, with staging's key.
        direct = self.stg.restore_db_cluster_from_snapshot(
            SnapshotIdentifier=copy["DBClusterSnapshotArn"], DBClusterIdentifier="shop-direct",
            Engine=ENGINE, KmsKeyId=staging_key,
        )["DBCluster"]
        self.assertEqual((direct["MasterUsername"], direct["KmsKeyId"]), ("produser", staging_key))

        # Revoked: gone for staging again.
        self.prod.modify_db_cluster_snapshot_attribute(
            DBClusterSnapshotIdentifier="shop-snap-cmk", AttributeName="restore", ValuesToRemove=[STAGING]
        )
        self.assertFails("DBClusterSnapshotNotFoundFault", self.stg.restore_db_cluster_from_snapshot,
                         SnapshotIdentifier=copy["DBClusterSnapshotArn"], DBClusterIdentifier="x", Engine=ENGINE)

    def test_restore_takes_the_snapshots_data_and_the_given_settings(self) -> None:
        source = self.create_cluster(self.prod, "books", MasterUsername="produser",
                                     MasterUserPassword="production-pass-1", EngineVersion="15.4")
        self.prod.create_db_cluster_snapshot(DBClusterIdentifier="books", DBClusterSnapshotIdentifier="books-snap")
        self.share("books-snap")
        arn = f"arn:aws:rds:us-east-1:{PRODUCTION}:cluster-snapshot:books-snap"
        self.stg.create_db_cluster_parameter_group(
            DBClusterParameterGroupName="staging-pg", DBParameterGroupFamily="aurora-postgresql15", Description="s"
        )
        settings = {
            "DBSubnetGroupName": "default", "VpcSecurityGroupIds": ["sg-0123456789abcdef0"],
            "DBClusterParameterGroupName": "staging-pg", "DeletionProtection": True,
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 1.0},
            "Tags": [{"Key": "understudy:environment", "Value": "staging"}],
        }
        restored = self.stg.restore_db_cluster_from_snapshot(
            SnapshotIdentifier=arn, DBClusterIdentifier="books-tmp", Engine=ENGINE, **settings
        )["DBCluster"]
        self.assertEqual(
            {k: restored[k] for k in ("MasterUsername", "EngineVersion", "DBSubnetGroup", "DBClusterParameterGroup",
                                      "DeletionProtection", "ServerlessV2ScalingConfiguration", "TagList")},
            {"MasterUsername": "produser", "EngineVersion": "15.4", "DBSubnetGroup": "default",
             "DBClusterParameterGroup": "staging-pg", "DeletionProtection": True,
             "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 1.0},
             "TagList": settings["Tags"]},
        )
        self.assertEqual([g["VpcSecurityGroupId"] for g in restored["VpcSecurityGroups"]], ["sg-0123456789abcdef0"])
        self.assertGreater(restored["ClusterCreateTime"], source["ClusterCreateTime"])
        self.assertTrue(restored["DBClusterArn"].startswith(f"arn:aws:rds:us-east-1:{STAGING}:"))
        # The snapshot's password came along; EngineVersion, when given, wins.
        self.assertEqual(self.check_password("cluster", "books-tmp", "produser", "production-pass-1"), (200, {"ok": True}))
        newer = self.stg.restore_db_cluster_from_snapshot(
            SnapshotIdentifier=arn, DBClusterIdentifier="books-newer", Engine=ENGINE, EngineVersion="16.1"
        )["DBCluster"]
        self.assertEqual(newer["EngineVersion"], "16.1")
        # The name is taken now: AWS answers DBClusterAlreadyExistsFault (moto replaced it).
        self.assertFails("DBClusterAlreadyExistsFault", self.stg.restore_db_cluster_from_snapshot,
                         SnapshotIdentifier=arn, DBClusterIdentifier="books-tmp", Engine=ENGINE)

    def test_shared_instance_snapshot_is_copied_by_arn_and_restored(self) -> None:
        prod_kms = self.production_client("kms")
        cmk = prod_kms.create_key()["KeyMetadata"]["Arn"]
        for identifier, extra in (("legacy", {"KmsKeyId": cmk}), ("legacy-default", {})):
            self.prod.create_db_instance(
                DBInstanceIdentifier=identifier, Engine="postgres", EngineVersion="14.9",
                DBInstanceClass="db.t3.micro", MasterUsername="produser", MasterUserPassword="production-pass-1",
                StorageEncrypted=True, **extra,
            )
            self.prod.create_db_snapshot(DBInstanceIdentifier=identifier, DBSnapshotIdentifier=f"{identifier}-snap")
            self.share(f"{identifier}-snap", kind="instance")
        self.assertEqual(self.instance(self.prod, "legacy")["KmsKeyId"], cmk)
        aws_managed = self.instance(self.prod, "legacy-default")["KmsKeyId"]
        self.assertEqual(prod_kms.describe_key(KeyId=aws_managed)["KeyMetadata"]["KeyManager"], "AWS")
        arn = f"arn:aws:rds:us-east-1:{PRODUCTION}:snapshot:"
        staging_key = self.client("kms").create_key()["KeyMetadata"]["Arn"]

        self.assertFails("DBSnapshotNotFound", self.stg.copy_db_snapshot,
                         SourceDBSnapshotIdentifier=arn + "nope", TargetDBSnapshotIdentifier="x", KmsKeyId=staging_key)
        self.assertFails("KMSKeyNotAccessibleFault", self.stg.copy_db_snapshot,
                         SourceDBSnapshotIdentifier=arn + "legacy-default-snap", TargetDBSnapshotIdentifier="x",
                         KmsKeyId=staging_key)
        copy = self.stg.copy_db_snapshot(
            SourceDBSnapshotIdentifier=arn + "legacy-snap", TargetDBSnapshotIdentifier="legacy-in-staging",
            KmsKeyId=staging_key,
        )["DBSnapshot"]
        self.assertEqual(
            {k: copy[k] for k in ("Engine", "EngineVersion", "MasterUsername", "Encrypted", "KmsKeyId")},
            {"Engine": "postgres", "EngineVersion": "14.9", "MasterUsername": "produser", "Encrypted": True,
             "KmsKeyId": staging_key},
        )
        subnets = [s["SubnetId"] for s in self.client("ec2").describe_subnets()["Subnets"]][:2]
        self.stg.create_db_subnet_group(DBSubnetGroupName="staging-db", DBSubnetGroupDescription="s", SubnetIds=subnets)
        restored = self.stg.restore_db_instance_from_db_snapshot(
            DBSnapshotIdentifier="legacy-in-staging", DBInstanceIdentifier="legacy-tmp",
            DBSubnetGroupName="staging-db", VpcSecurityGroupIds=["sg-0123456789abcdef0"], DeletionProtection=True,
            Tags=[{"Key": "understudy:environment", "Value": "staging"}],
        )["DBInstance"]
        self.assertEqual(
            {k: restored[k] for k in ("MasterUsername", "EngineVersion", "KmsKeyId", "DeletionProtection", "TagList")},
            {"MasterUsername": "produser", "EngineVersion": "14.9", "KmsKeyId": staging_key,
             "DeletionProtection": True, "TagList": [{"Key": "understudy:environment", "Value": "staging"}]},
        )
        self.assertEqual(restored["DBSubnetGroup"]["DBSubnetGroupName"], "staging-db")
        self.assertEqual([g["VpcSecurityGroupId"] for g in restored["VpcSecurityGroups"]], ["sg-0123456789abcdef0"])
        self.assertGreater(restored["InstanceCreateTime"], self.instance(self.prod, "legacy")["InstanceCreateTime"])
        # Restoring by the copy's own ARN works too.
        by_arn = self.stg.restore_db_instance_from_db_snapshot(
            DBSnapshotIdentifier=copy["DBSnapshotArn"], DBInstanceIdentifier="legacy-tmp-2"
        )["DBInstance"]
        self.assertEqual(by_arn["MasterUsername"], "produser")

    def test_kms_key_ids_are_resolved_or_refused_as_rds_does(self) -> None:
        kms = self.client("kms")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName="alias/staging-db", TargetKeyId=key)
        by_alias = self.create_cluster(self.stg, "keyed", StorageEncrypted=True, KmsKeyId="alias/staging-db")
        self.assertEqual(by_alias["KmsKeyId"], key)
        self.assertNotIn("KmsKeyId", self.create_cluster(self.stg, "plain"))
        self.stg.create_db_cluster_snapshot(DBClusterIdentifier="keyed", DBClusterSnapshotIdentifier="keyed-snap")
        self.stg.create_db_cluster_snapshot(DBClusterIdentifier="plain", DBClusterSnapshotIdentifier="plain-snap")
        # An alias that does not exist (moto: a 500).
        self.assertFails("KMSKeyNotAccessibleFault", self.stg.copy_db_cluster_snapshot,
                         SourceDBClusterSnapshotIdentifier="keyed-snap", TargetDBClusterSnapshotIdentifier="x",
                         KmsKeyId="alias/does-not-exist")
        # Another account's AWS-managed key cannot be used; its customer key can.
        prod_kms = self.production_client("kms")
        prod_aws_rds = prod_kms.describe_key(KeyId="alias/aws/rds")["KeyMetadata"]["Arn"]
        self.assertFails("KMSKeyNotAccessibleFault", self.stg.copy_db_cluster_snapshot,
                         SourceDBClusterSnapshotIdentifier="keyed-snap", TargetDBClusterSnapshotIdentifier="x",
                         KmsKeyId=prod_aws_rds)
        prod_cmk = prod_kms.create_key()["KeyMetadata"]["Arn"]
        copy = self.stg.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier="keyed-snap", TargetDBClusterSnapshotIdentifier="keyed-prod-key",
            KmsKeyId=prod_cmk,
        )["DBClusterSnapshot"]
        self.assertEqual(copy["KmsKeyId"], prod_cmk)
        # AWS: an unencrypted cluster snapshot cannot be encrypted by a copy.
        self.assertFails("InvalidParameterCombination", self.stg.copy_db_cluster_snapshot,
                         SourceDBClusterSnapshotIdentifier="plain-snap", TargetDBClusterSnapshotIdentifier="x",
                         KmsKeyId=key)
        # A disabled key is not accessible either.
        kms.disable_key(KeyId=key.split("/")[-1])
        self.assertFails("KMSKeyNotAccessibleFault", self.create_cluster, rds=self.stg, identifier="x",
                         StorageEncrypted=True, KmsKeyId=key)

    def test_a_restore_keeps_the_snapshots_key_unless_given_one_resolved_in_the_callers_account(self) -> None:
        # AWS (RestoreDBClusterFromSnapshot, KmsKeyId): without it, a cluster restored from
        # an encrypted snapshot "is encrypted using the KMS key that was used to encrypt the
        # DB snapshot"; a key ID or alias names a key of the caller's account, another
        # account's key is named by key or alias ARN; a key the caller cannot use is
        # KMSKeyNotAccessibleFault (the only KMS fault the operation lists).
        prod_kms, kms = self.production_client("kms"), self.client("kms")
        share_key = prod_kms.create_key(Description="share")["KeyMetadata"]
        prod_kms.create_alias(AliasName="alias/share-restores", TargetKeyId=share_key["KeyId"])
        self.create_cluster(self.prod, "orders", StorageEncrypted=True, KmsKeyId=share_key["Arn"])
        self.prod.create_db_cluster_snapshot(DBClusterIdentifier="orders", DBClusterSnapshotIdentifier="orders-snap")
        self.share("orders-snap")
        arn = f"arn:aws:rds:us-east-1:{PRODUCTION}:cluster-snapshot:orders-snap"
        staging_key = kms.create_key()["KeyMetadata"]
        kms.create_alias(AliasName="alias/staging-restores", TargetKeyId=staging_key["KeyId"])

        def restore(identifier: str, **kwargs: Any) -> str:
            cluster = self.stg.restore_db_cluster_from_snapshot(
                SnapshotIdentifier=arn, DBClusterIdentifier=identifier, Engine=ENGINE, **kwargs
            )["DBCluster"]
            self.assertIs(cluster["StorageEncrypted"], True, identifier)
            self.assertEqual(self.cluster(self.stg, identifier)["KmsKeyId"], cluster["KmsKeyId"])
            return cluster["KmsKeyId"]

        # No KmsKeyId: production's key stays, so a restore that forgets it shows it.
        self.assertEqual(restore("orders-inherited"), share_key["Arn"])
        # alias/aws/rds is the caller's own AWS-managed key, created on first use.
        staging_aws_rds = kms.describe_key(KeyId="alias/aws/rds")["KeyMetadata"]
        self.assertEqual((staging_aws_rds["AWSAccountId"], staging_aws_rds["KeyManager"]), (STAGING, "AWS"))
        self.assertEqual(restore("orders-aws-rds", KmsKeyId="alias/aws/rds"), staging_aws_rds["Arn"])
        # Alias, key id, alias ARN: each shown as the key ARN.
        self.assertEqual(restore("orders-alias", KmsKeyId="alias/staging-restores"), staging_key["Arn"])
        self.assertEqual(restore("orders-id", KmsKeyId=staging_key["KeyId"]), staging_key["Arn"])
        alias_arn = "arn:aws:kms:us-east-1:{}:alias/{}".format
        self.assertEqual(restore("orders-alias-arn", KmsKeyId=alias_arn(STAGING, "staging-restores")),
                         staging_key["Arn"])
        self.assertEqual(restore("orders-prod-alias-arn", KmsKeyId=alias_arn(PRODUCTION, "share-restores")),
                         share_key["Arn"])
        # The cluster's instances show its key.
        self.create_member(self.stg, "orders-aws-rds", "orders-aws-rds-1")
        self.assertEqual(self.instance(self.stg, "orders-aws-rds-1")["KmsKeyId"], staging_aws_rds["Arn"])
        # Production's key id and alias mean nothing in staging; unknown ones neither.
        for missing in (share_key["KeyId"], "alias/share-restores", "alias/does-not-exist",
                        "0000aaaa-0000-4000-8000-000000000000"):
            self.assertFails("KMSKeyNotAccessibleFault", self.stg.restore_db_cluster_from_snapshot,
                             SnapshotIdentifier=arn, DBClusterIdentifier="orders-refused", Engine=ENGINE,
                             KmsKeyId=missing)
        self.assertFails("DBClusterNotFoundFault", self.stg.describe_db_clusters,
                         DBClusterIdentifier="orders-refused")
        # An unencrypted snapshot restores unencrypted, or encrypted with the key given.
        self.create_cluster(self.stg, "orders-plain")
        self.stg.create_db_cluster_snapshot(DBClusterIdentifier="orders-plain",
                                            DBClusterSnapshotIdentifier="orders-plain-snap")
        plain = self.stg.restore_db_cluster_from_snapshot(
            SnapshotIdentifier="orders-plain-snap", DBClusterIdentifier="orders-plain-restored", Engine=ENGINE
        )["DBCluster"]
        self.assertEqual((plain["StorageEncrypted"], plain.get("KmsKeyId")), (False, None))
        keyed = self.stg.restore_db_cluster_from_snapshot(
            SnapshotIdentifier="orders-plain-snap", DBClusterIdentifier="orders-plain-keyed", Engine=ENGINE,
            KmsKeyId="alias/aws/rds",
        )["DBCluster"]
        self.assertEqual((keyed["StorageEncrypted"], keyed["KmsKeyId"]), (True, staging_aws_rds["Arn"]))

    # 3, 4: cluster members

    def test_cluster_keeps_its_members_through_a_rename_and_cannot_be_deleted_with_them(self) -> None:
        self.create_cluster(self.stg, "crm")
        self.create_member(self.stg, "crm", "crm-1")
        self.assertFails("InvalidDBClusterStateFault", self.stg.delete_db_cluster,
                         DBClusterIdentifier="crm", SkipFinalSnapshot=True)
        self.stg.modify_db_cluster(DBClusterIdentifier="crm", NewDBClusterIdentifier="crm-retired", ApplyImmediately=True)
        members = self.cluster(self.stg, "crm-retired")["DBClusterMembers"]
        self.assertEqual([m["DBInstanceIdentifier"] for m in members], ["crm-1"])
        self.assertEqual(self.instance(self.stg, "crm-1")["DBClusterIdentifier"], "crm-retired")
        message = self.assertFails("InvalidDBClusterStateFault", self.stg.delete_db_cluster,
                                   DBClusterIdentifier="crm-retired", SkipFinalSnapshot=True)
        self.assertEqual(message, "Cluster cannot be deleted, it still contains DB instances in non-deleting state.")
        self.stg.delete_db_instance(DBInstanceIdentifier="crm-1", SkipFinalSnapshot=True)
        self.stg.delete_db_cluster(DBClusterIdentifier="crm-retired", SkipFinalSnapshot=True)

    # 5, 6, 7: renames

    def test_rename_takes_time_and_holds_the_old_name_until_done(self) -> None:
        self.create_cluster(self.stg, "app")
        self.create_cluster(self.stg, "app-new")
        self.stg.create_db_instance(
            DBInstanceIdentifier="appdb", Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="stguser", MasterUserPassword="staging-pass-1",
        )
        self.set_slow_polls(2)
        renamed = self.stg.modify_db_cluster(
            DBClusterIdentifier="app", NewDBClusterIdentifier="app-retired", ApplyImmediately=True
        )["DBCluster"]
        self.assertEqual((renamed["DBClusterIdentifier"], renamed["Status"]), ("app-retired", "renaming"))
        self.assertFails("DBClusterNotFoundFault", self.stg.describe_db_clusters, DBClusterIdentifier="app")
        # The old name stays taken while the rename runs: for a create, a restore, a rename.
        self.assertFails("DBClusterAlreadyExistsFault", self.create_cluster, rds=self.stg, identifier="app")
        self.assertFails("DBClusterAlreadyExistsFault", self.stg.modify_db_cluster,
                         DBClusterIdentifier="app-new", NewDBClusterIdentifier="app", ApplyImmediately=True)
        # The new name answers at once; `renaming` shows for the slow polls.
        statuses = [self.cluster(self.stg, "app-retired")["Status"] for _ in range(3)]
        self.assertEqual(statuses, ["renaming", "renaming", "available"])
        self.stg.modify_db_cluster(DBClusterIdentifier="app-new", NewDBClusterIdentifier="app", ApplyImmediately=True)

        instance = self.stg.modify_db_instance(
            DBInstanceIdentifier="appdb", NewDBInstanceIdentifier="appdb-retired", ApplyImmediately=True
        )["DBInstance"]
        self.assertEqual((instance["DBInstanceIdentifier"], instance["DBInstanceStatus"]), ("appdb-retired", "renaming"))
        self.assertFails("DBInstanceAlreadyExists", self.stg.create_db_instance,
                         DBInstanceIdentifier="appdb", Engine="postgres", DBInstanceClass="db.t3.micro",
                         MasterUsername="stguser", MasterUserPassword="staging-pass-1")
        statuses = [self.instance(self.stg, "appdb-retired")["DBInstanceStatus"] for _ in range(3)]
        self.assertEqual(statuses, ["renaming", "renaming", "available"])
        self.stg.create_db_instance(
            DBInstanceIdentifier="appdb", Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="stguser", MasterUserPassword="staging-pass-1",
        )

    def test_rename_needs_a_free_name_an_available_database_and_apply_immediately(self) -> None:
        for name in ("web", "web-other"):
            self.create_cluster(self.stg, name)
        self.create_member(self.stg, "web", "web-1")
        for name in ("webdb", "webdb-other"):
            self.stg.create_db_instance(
                DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro",
                MasterUsername="stguser", MasterUserPassword="staging-pass-1",
            )
        self.assertFails("DBClusterAlreadyExistsFault", self.stg.modify_db_cluster,
                         DBClusterIdentifier="web", NewDBClusterIdentifier="web-other", ApplyImmediately=True)
        self.assertFails("DBInstanceAlreadyExists", self.stg.modify_db_instance,
                         DBInstanceIdentifier="webdb", NewDBInstanceIdentifier="webdb-other", ApplyImmediately=True)
        self.assertFails("DBClusterNotFoundFault", self.stg.modify_db_cluster,
                         DBClusterIdentifier="web-missing", NewDBClusterIdentifier="x", ApplyImmediately=True)
        # Without ApplyImmediately a rename waits for the maintenance window.
        pending = self.stg.modify_db_cluster(DBClusterIdentifier="web", NewDBClusterIdentifier="web-later")["DBCluster"]
        self.assertEqual(pending["DBClusterIdentifier"], "web")
        self.assertEqual(pending["PendingModifiedValues"], {"DBClusterIdentifier": "web-later"})
        self.assertEqual(self.cluster(self.stg, "web")["Status"], "available")

        # A stopped (stopping, starting) database cannot be renamed.
        self.set_slow_polls(1)
        self.stg.stop_db_cluster(DBClusterIdentifier="web")
        self.stg.stop_db_instance(DBInstanceIdentifier="webdb")
        for _ in range(2):
            status = self.cluster(self.stg, "web")["Status"]
            self.assertFails("InvalidDBClusterStateFault", self.stg.modify_db_cluster,
                             DBClusterIdentifier="web", NewDBClusterIdentifier="web-x", ApplyImmediately=True)
            instance_status = self.instance(self.stg, "webdb")["DBInstanceStatus"]
            self.assertFails("InvalidDBInstanceState", self.stg.modify_db_instance,
                             DBInstanceIdentifier="webdb", NewDBInstanceIdentifier="webdb-x", ApplyImmediately=True)
        self.assertEqual((status, instance_status), ("stopped", "stopped"))
        # The cluster's instances stop and start with it.
        self.assertEqual([self.instance(self.stg, "web-1")["DBInstanceStatus"] for _ in range(2)],
                         ["stopping", "stopped"])
        self.assertFails("InvalidDBInstanceState", self.stg.modify_db_instance,
                         DBInstanceIdentifier="web-1", NewDBInstanceIdentifier="web-2", ApplyImmediately=True)
        self.stg.start_db_cluster(DBClusterIdentifier="web")
        self.assertEqual(self.cluster(self.stg, "web")["Status"], "starting")
        self.assertEqual(self.instance(self.stg, "web-1")["DBInstanceStatus"], "starting")
        self.assertFails("InvalidDBClusterStateFault", self.stg.modify_db_cluster,
                         DBClusterIdentifier="web", NewDBClusterIdentifier="web-x", ApplyImmediately=True)

    def test_identifiers_have_at_most_63_characters(self) -> None:
        longest, too_long = "c" + "x" * 62, "c" + "x" * 63
        self.create_cluster(self.stg, longest)
        self.assertFails("InvalidParameterValue", self.create_cluster, rds=self.stg, identifier=too_long)
        self.stg.create_db_cluster_snapshot(DBClusterIdentifier=longest, DBClusterSnapshotIdentifier="long-snap")
        self.assertFails("InvalidParameterValue", self.stg.restore_db_cluster_from_snapshot,
                         SnapshotIdentifier="long-snap", DBClusterIdentifier=too_long, Engine=ENGINE)
        self.assertFails("InvalidParameterValue", self.stg.modify_db_cluster,
                         DBClusterIdentifier=longest, NewDBClusterIdentifier=too_long, ApplyImmediately=True)
        for bad in ("1starts-with-digit", "ends-with-", "two--hyphens"):
            self.assertFails("InvalidParameterValue", self.create_cluster, rds=self.stg, identifier=bad)
        # moto checks instance identifiers itself; the rename's new one is checked here.
        self.assertFails("InvalidParameterValue", self.stg.create_db_instance,
                         DBInstanceIdentifier="i" + "x" * 63, Engine="postgres", DBInstanceClass="db.t3.micro",
                         MasterUsername="stguser", MasterUserPassword="staging-pass-1")
        self.stg.create_db_instance(
            DBInstanceIdentifier="i" + "x" * 62, Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="stguser", MasterUserPassword="staging-pass-1",
        )
        self.assertFails("InvalidParameterValue", self.stg.modify_db_instance,
                         DBInstanceIdentifier="i" + "x" * 62, NewDBInstanceIdentifier="i" + "x" * 63,
                         ApplyImmediately=True)

    # 11: passwords

    def check_password(self, kind: str, identifier: str, username: str, password: str,
                       account: str = STAGING) -> tuple[int, object]:
        return self.control("/understudy/rds/check-password", {
            "account": account, "region": "us-east-1", "kind": kind, "identifier": identifier,
            "username": username, "password": password,
        })

    def test_check_password_compares_with_the_stored_or_managed_password(self) -> None:
        self.create_cluster(self.stg, "pw", MasterUsername="admin", MasterUserPassword="first-pass-1")
        self.create_member(self.stg, "pw", "pw-1")
        ok = (200, {"ok": True})
        self.assertEqual(self.check_password("cluster", "pw", "admin", "first-pass-1"), ok)
        self.assertEqual(self.check_password("instance", "pw-1", "admin", "first-pass-1"), ok)
        self.assertEqual(self.check_password("cluster", "pw", "other", "first-pass-1"), (200, {"ok": False}))
        self.stg.modify_db_cluster(DBClusterIdentifier="pw", MasterUserPassword="second-pass-2", ApplyImmediately=True)
        self.assertEqual(self.check_password("cluster", "pw", "admin", "first-pass-1"), (200, {"ok": False}))
        self.assertEqual(self.check_password("cluster", "pw", "admin", "second-pass-2"), ok)
        # Managed: a random password for the master user, kept in the secret.
        self.stg.modify_db_cluster(DBClusterIdentifier="pw", ManageMasterUserPassword=True, ApplyImmediately=True)
        secret_arn = self.cluster(self.stg, "pw")["MasterUserSecret"]["SecretArn"]
        secret = json.loads(self.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
        self.assertEqual(secret["username"], "admin")
        self.assertNotEqual(secret["password"], "P@55w0rd!")
        self.assertEqual(self.check_password("cluster", "pw", "admin", secret["password"]), ok)
        self.assertEqual(self.check_password("cluster", "pw", "admin", "second-pass-2"), (200, {"ok": False}))
        # A snapshot keeps the password, not its management: the restore opens with it.
        self.stg.create_db_cluster_snapshot(DBClusterIdentifier="pw", DBClusterSnapshotIdentifier="pw-snap")
        restored = self.stg.restore_db_cluster_from_snapshot(
            SnapshotIdentifier="pw-snap", DBClusterIdentifier="pw-restored", Engine=ENGINE
        )["DBCluster"]
        self.assertNotIn("MasterUserSecret", restored)
        self.assertEqual(self.check_password("cluster", "pw-restored", "admin", secret["password"]), ok)
        # Other accounts, missing databases, bad requests.
        self.assertEqual(self.check_password("cluster", "pw", "admin", secret["password"], PRODUCTION)[0], 404)
        self.assertEqual(self.control("/understudy/rds/check-password", {"kind": "table"})[0], 400)

    # Public access

    def create_instance(self, rds: Any, identifier: str, **kwargs: Any) -> dict[str, Any]:
        return rds.create_db_instance(
            DBInstanceIdentifier=identifier, Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="stguser", MasterUserPassword="staging-pass-1", **kwargs,
        )["DBInstance"]

    def public(self, identifier: str) -> Any:
        return self.instance(self.stg, identifier).get("PubliclyAccessible")

    def test_instances_are_public_unless_asked_otherwise(self) -> None:
        # AWS: without PubliclyAccessible, an instance in a default VPC (or a VPC with an
        # internet gateway) is public; moto left it unset.
        self.create_instance(self.stg, "pa-default")
        self.create_instance(self.stg, "pa-private", PubliclyAccessible=False)
        self.create_instance(self.stg, "pa-public", PubliclyAccessible=True)
        self.assertEqual([self.public(i) for i in ("pa-default", "pa-private", "pa-public")], [True, False, True])
        self.create_cluster(self.stg, "pa-cluster")
        self.create_member(self.stg, "pa-cluster", "pa-cluster-1")
        self.assertIs(self.public("pa-cluster-1"), True)
        self.stg.create_db_instance(
            DBInstanceIdentifier="pa-cluster-2", DBClusterIdentifier="pa-cluster", Engine=ENGINE,
            DBInstanceClass="db.serverless", PubliclyAccessible=False,
        )
        self.assertIs(self.public("pa-cluster-2"), False)

        # Restores and replicas follow the same rule, not their source's setting; an
        # explicit false is kept (moto ignored it when the source was public).
        for source in ("pa-public", "pa-private"):
            self.stg.create_db_snapshot(DBInstanceIdentifier=source, DBSnapshotIdentifier=f"{source}-snap")
        restores = {
            "pa-r-from-public-false": ("pa-public-snap", {"PubliclyAccessible": False}),
            "pa-r-from-private-default": ("pa-private-snap", {}),
            "pa-r-from-private-true": ("pa-private-snap", {"PubliclyAccessible": True}),
        }
        for target, (snapshot, extra) in restores.items():
            restored = self.stg.restore_db_instance_from_db_snapshot(
                DBSnapshotIdentifier=snapshot, DBInstanceIdentifier=target, **extra
            )["DBInstance"]
            self.assertEqual(restored.get("PubliclyAccessible"), extra.get("PubliclyAccessible", True), target)
            self.assertEqual(self.public(target), extra.get("PubliclyAccessible", True), target)
        point_in_time = self.stg.restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier="pa-public", TargetDBInstanceIdentifier="pa-pitr", PubliclyAccessible=False
        )["DBInstance"]
        self.assertIs(point_in_time["PubliclyAccessible"], False)
        self.stg.restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier="pa-private", TargetDBInstanceIdentifier="pa-pitr-default"
        )
        self.assertIs(self.public("pa-pitr-default"), True)
        self.stg.create_db_instance_read_replica(
            SourceDBInstanceIdentifier="pa-private", DBInstanceIdentifier="pa-replica"
        )
        self.stg.create_db_instance_read_replica(
            SourceDBInstanceIdentifier="pa-public", DBInstanceIdentifier="pa-replica-private", PubliclyAccessible=False
        )
        self.assertEqual([self.public(i) for i in ("pa-replica", "pa-replica-private", "pa-private", "pa-public")],
                         [True, False, False, True])


class DatabaseStatusOverrideTest(SharedStackTestCase):
    """POST/GET/DELETE /understudy/rds/status-override (rds_status.py)."""

    PATH = "/understudy/rds/status-override"

    def setUp(self) -> None:
        self.assertEqual(self.control(self.PATH, method="DELETE"), (200, {"overrides": []}))
        self.stg = self.client("rds")
        self.prod = self.production_client("rds")

    def tearDown(self) -> None:
        self.control(self.PATH, method="DELETE")  # none may outlive its test
        self.set_slow_polls(0)

    def override(self, **body: Any) -> dict[str, Any]:
        status, answer = self.control(self.PATH, body)
        self.assertEqual(status, 200, answer)
        return answer

    def instance_status(self, rds: Any, identifier: str) -> str:
        return rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["DBInstanceStatus"]

    def cluster_status(self, rds: Any, identifier: str) -> str:
        return rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]["Status"]

    def create_instance(self, rds: Any, identifier: str, **kwargs: Any) -> None:
        rds.create_db_instance(DBInstanceIdentifier=identifier, DBInstanceClass="db.t3.micro", **(kwargs or {
            "Engine": "postgres", "MasterUsername": "stguser", "MasterUserPassword": "staging-pass-1"}))

    def test_matching_databases_show_the_status_now_and_once_created(self) -> None:
        self.set_slow_polls(0)
        self.stg.create_db_cluster(DBClusterIdentifier="ovr-aurora-new-1", Engine=ENGINE,
                                   MasterUsername="stguser", MasterUserPassword="staging-pass-1")
        self.create_instance(self.stg, "ovr-aurora-new-1-a", Engine=ENGINE, DBClusterIdentifier="ovr-aurora-new-1")
        self.create_instance(self.stg, "ovr-other")
        answer = self.override(account=STAGING, kind="instance", identifier_prefix="ovr-aurora-new-",
                               status="incompatible-parameters")
        self.assertEqual({k: v for k, v in answer.items() if k != "id"}, {
            "account": STAGING, "region": "us-east-1", "kind": "instance", "identifier_prefix": "ovr-aurora-new-",
            "status": "incompatible-parameters",
        })
        self.assertEqual(self.instance_status(self.stg, "ovr-aurora-new-1-a"), "incompatible-parameters")
        self.assertEqual(self.instance_status(self.stg, "ovr-other"), "available")
        self.assertEqual(self.cluster_status(self.stg, "ovr-aurora-new-1"), "available")  # kind instance only
        # Clusters have their own kind; the prefix is matched case-insensitively.
        self.override(kind="cluster", identifier_prefix="OVR-Aurora-New-", status="incompatible-restore")
        self.assertEqual(self.cluster_status(self.stg, "ovr-aurora-new-1"), "incompatible-restore")
        # A database created afterwards shows it at once, in an unfiltered describe too.
        self.create_instance(self.stg, "ovr-aurora-new-2")
        shown = {i["DBInstanceIdentifier"]: i["DBInstanceStatus"] for i in self.stg.describe_db_instances()["DBInstances"]}
        self.assertEqual({k: v for k, v in shown.items() if k.startswith("ovr-")}, {
            "ovr-aurora-new-1-a": "incompatible-parameters", "ovr-aurora-new-2": "incompatible-parameters",
            "ovr-other": "available",
        })
        # The last added matching override wins.
        self.override(kind="instance", identifier_prefix="ovr-aurora-new-2", status="failed")
        self.assertEqual(self.instance_status(self.stg, "ovr-aurora-new-2"), "failed")
        self.assertEqual(self.instance_status(self.stg, "ovr-aurora-new-1-a"), "incompatible-parameters")
        # Another account (default: staging) is not affected.
        self.create_instance(self.prod, "ovr-aurora-new-prod")
        self.assertEqual(self.instance_status(self.prod, "ovr-aurora-new-prod"), "available")

        status, listed = self.control(self.PATH)
        self.assertEqual(status, 200)
        self.assertEqual([(o["kind"], o["identifier_prefix"], o["status"]) for o in listed["overrides"]], [
            ("instance", "ovr-aurora-new-", "incompatible-parameters"),
            ("cluster", "OVR-Aurora-New-", "incompatible-restore"),
            ("instance", "ovr-aurora-new-2", "failed"),
        ])
        # Only describes change: moto keeps the real status, which other calls see.
        from_modify = self.stg.modify_db_instance(DBInstanceIdentifier="ovr-aurora-new-2", ApplyImmediately=True,
                                                  BackupRetentionPeriod=2)["DBInstance"]
        self.assertEqual(from_modify["DBInstanceStatus"], "available")
        self.assertEqual(self.control(self.PATH, method="DELETE"), (200, {"overrides": []}))
        self.assertEqual(self.instance_status(self.stg, "ovr-aurora-new-2"), "available")
        self.assertEqual(self.cluster_status(self.stg, "ovr-aurora-new-1"), "available")

    def test_override_wins_over_a_held_transition(self) -> None:
        self.set_slow_polls(2)
        self.override(kind="instance", identifier_prefix="ovr-held-", status="incompatible-restore")
        self.create_instance(self.stg, "ovr-held-1")
        self.create_instance(self.stg, "ovr-unheld-1")
        self.assertEqual([self.instance_status(self.stg, "ovr-held-1") for _ in range(3)],
                         ["incompatible-restore"] * 3)
        # The transition ran underneath: once cleared, the instance shows where it got to.
        self.control(self.PATH, method="DELETE")
        self.assertEqual(self.instance_status(self.stg, "ovr-held-1"), "available")
        self.assertEqual([self.instance_status(self.stg, "ovr-unheld-1") for _ in range(3)],
                         ["creating", "creating", "available"])

    def test_malformed_requests_are_refused(self) -> None:
        for body in ({"kind": "table", "identifier_prefix": "x", "status": "failed"},
                     {"kind": "instance", "identifier_prefix": "x"},
                     {"kind": "cluster", "identifier_prefix": "", "status": "failed"},
                     {"kind": "cluster", "identifier_prefix": "x", "status": "failed", "account": 222222222222},
                     ["not", "an", "object"]):
            self.assertEqual(self.control(self.PATH, body)[0], 400, body)
        self.assertEqual(self.control(self.PATH, method="PUT")[0], 405)
        self.assertEqual(self.control(self.PATH), (200, {"overrides": []}))


if __name__ == "__main__":
    unittest.main()
