"""The deployed roles' statements evaluated for the exact requests understudy makes on AWS
(iam_eval.py): return-to-sleep's stop and sleep tags, retire's deletions (a cluster's
members by their derived names), the restore's creation-time tags, the swap's retired-by
tag, scale-to-zero's sleep tags, the mirror's writes, the production role's snapshots;
and production's databases, untagged resources and the unlocking tag, each refused."""

from __future__ import annotations

import sys
import unittest
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import iam_audit  # noqa: E402
import samconfig  # noqa: E402
from iam_eval import Request, decide  # noqa: E402

STAGING = iam_audit.ACCOUNT  # the staging stack's own account
PRODUCTION = "111111111111"  # samconfig's staging environment's ProductionAccountId
REGION = iam_audit.REGION
RUN = "refresh-2026-12-02"

STAGED = {"understudy:environment": "staging"}
MADE = STAGED | {"understudy:managed": "true", "understudy:run": RUN}


def rds(kind: str, name: str, account: str = STAGING) -> str:
    return f"arn:aws:rds:{REGION}:{account}:{kind}:{name}"


@lru_cache(maxsize=None)
def statements(env: str, role: str, **overrides: str) -> list[dict]:
    config = samconfig.load()
    parameters = samconfig.parameters(env, config) | overrides
    account = PRODUCTION if env == "production-access" else STAGING
    found = iam_audit.stack_roles(samconfig.template(env, config), parameters, account=account)
    return next(r for r in found if r.name == role).statements()


class Case(unittest.TestCase):
    env = "staging"
    role = "RestoreFunctionRole"

    def allowed(self, request: Request, **overrides: str) -> None:
        ok, why = decide(statements(self.env, self.role, **overrides), request)
        self.assertTrue(ok, why)

    def refused(self, request: Request, **overrides: str) -> None:
        ok, why = decide(statements(self.env, self.role, **overrides), request)
        self.assertFalse(ok, f"{self.role} must not be allowed {request.action} on {list(request.resources)}")


class TheRestoreRole(Case):
    live = rds("cluster", "staging-aurora")
    temporary = rds("cluster", "staging-aurora-new-1a2b3c")
    member = rds("db", "staging-aurora-new-1a2b3c-1")
    shared = rds("cluster-snapshot", f"understudy-{RUN}-share", PRODUCTION)

    def test_return_to_sleep_stops_the_database_and_tags_it_asleep(self):
        self.allowed(Request("rds:StopDBCluster", {self.live: MADE}))
        self.allowed(Request("rds:AddTagsToResource", {self.live: MADE},
                             tags={"understudy:sleep:state": "asleep", "understudy:sleep:since": "2026-12-02T20:00:00Z"}))

    def test_retire_deletes_the_retired_cluster_its_final_snapshot_and_its_members(self):
        retired = rds("cluster", "staging-aurora-retired-1a2b3c")
        self.allowed(Request("rds:DeleteDBCluster", {retired: MADE}))
        final = rds("cluster-snapshot", "staging-aurora-retired-1a2b3c-final")
        self.allowed(Request("rds:CreateDBClusterSnapshot", {retired: MADE, final: {}}))
        # A member created with the cluster, by its derived name, tagged or not.
        self.allowed(Request("rds:DeleteDBInstance", {self.member: {}}))
        self.allowed(Request("rds:DeleteDBInstance", {self.member: MADE}))
        # A member the user made and did not tag: refused (check refuses the run first).
        self.refused(Request("rds:DeleteDBInstance", {rds("db", "staging-aurora-writer"): {}}))
        # Nor an untagged instance whose name merely contains -new- (a production one, in one account).
        self.refused(Request("rds:DeleteDBInstance", {rds("db", "api-new-prod-1"): {}}))

    def test_the_restore_creates_only_under_understudys_names_with_the_staging_tag(self):
        sources = {self.shared: {}, rds("subgrp", "staging-db"): {}, rds("cluster-pg", "staging-pg"): {}}
        self.allowed(Request("rds:RestoreDBClusterFromSnapshot", {self.temporary: {}} | sources, tags=MADE))
        self.allowed(Request("rds:AddTagsToResource", {self.temporary: {}}, tags=MADE))
        self.allowed(Request("rds:CreateDBInstance", {self.member: {}, self.temporary: MADE, rds("pg", "x"): {}},
                             tags=MADE))
        # Not under a temporary name, or without the staging tag, or with another tag too.
        self.refused(Request("rds:RestoreDBClusterFromSnapshot", {self.live: {}} | sources, tags=MADE))
        self.refused(Request("rds:RestoreDBClusterFromSnapshot", {self.temporary: {}} | sources,
                             tags={"understudy:managed": "true", "understudy:run": RUN}))
        self.refused(Request("rds:AddTagsToResource", {self.temporary: {}}, tags=MADE | {"owner": "me"}))
        # From a snapshot understudy did not make.
        self.refused(Request("rds:RestoreDBClusterFromSnapshot",
                             {self.temporary: {}, rds("cluster-snapshot", "nightly", PRODUCTION): {}}, tags=MADE))

    def test_the_swap_tags_and_renames_only_the_staging_database(self):
        self.allowed(Request("rds:AddTagsToResource", {self.live: STAGED}, tags={"understudy:retired-by": RUN}))
        self.allowed(Request("rds:ModifyDBCluster", {self.live: STAGED}))
        self.allowed(Request("rds:ModifyDBCluster", {self.temporary: MADE}))

    def test_production_databases_and_untagged_ones_are_refused(self):
        for arn, tags in ((rds("cluster", "production-aurora", PRODUCTION), {}),
                          (rds("cluster", "production-aurora"), {}),
                          (rds("cluster", "production-aurora"), {"understudy:environment": "production"})):
            for action in ("rds:DeleteDBCluster", "rds:StopDBCluster", "rds:ModifyDBCluster", "rds:StartDBCluster"):
                self.refused(Request(action, {arn: tags}))
            # The unlocking tag: the restore role cannot add it to a database it did not make.
            self.refused(Request("rds:AddTagsToResource", {arn: tags}, tags=STAGED))
            self.refused(Request("rds:AddTagsToResource", {arn: tags}, tags={"understudy:sleep:state": "asleep"}))

    def test_keys_only_through_rds_for_this_account(self):
        key = f"arn:aws:kms:{REGION}:{PRODUCTION}:key/1234"
        through_rds = {"kms:ViaService": f"rds.{REGION}.amazonaws.com", "kms:CallerAccount": STAGING}
        self.allowed(Request("kms:CreateGrant", {key: {}}, context=through_rds))
        self.allowed(Request("kms:Decrypt", {key: {}}, context=through_rds))
        self.refused(Request("kms:Decrypt", {key: {}}, context=through_rds | {"kms:ViaService": "s3.x.amazonaws.com"}))
        self.refused(Request("kms:Decrypt", {key: {}}, context={"kms:CallerAccount": STAGING}))
        self.allowed(Request("kms:DescribeKey", {key: {}}))

    def test_the_conditions_follow_StagingTagKey(self):
        ours = {"Environment": "staging", "understudy:managed": "true", "understudy:run": RUN}
        self.allowed(Request("rds:StopDBCluster", {self.live: ours}), StagingTagKey="Environment")
        self.refused(Request("rds:StopDBCluster", {self.live: MADE}), StagingTagKey="Environment")
        self.allowed(Request("rds:RestoreDBClusterFromSnapshot", {self.temporary: {}, self.shared: {}}, tags=ours),
                     StagingTagKey="Environment")


class TheScaleToZeroRole(Case):
    role = "ScaleToZeroFunctionRole"
    db = rds("cluster", "staging-aurora")
    service = f"arn:aws:ecs:{REGION}:{STAGING}:service/staging/web"

    def test_sleep_scales_stops_and_tags_staging_resources_with_sleep_tags_only(self):
        self.allowed(Request("rds:StopDBCluster", {self.db: STAGED}))
        self.allowed(Request("rds:AddTagsToResource", {self.db: STAGED}, tags={"understudy:sleep:state": "asleep"}))
        self.allowed(Request("rds:RemoveTagsFromResource", {self.db: STAGED}, removes=["understudy:sleep:state"]))
        self.allowed(Request("ecs:UpdateService", {self.service: STAGED}))
        self.allowed(Request("ecs:TagResource", {self.service: STAGED}, tags={"understudy:sleep:desired": "2"}))
        self.refused(Request("ecs:TagResource", {self.service: STAGED}, tags={"understudy:managed": "true"}))
        self.refused(Request("ecs:UntagResource", {self.service: STAGED}, removes=["understudy:environment"]))

    def test_untagged_and_production_resources_are_refused(self):
        for arn in (rds("cluster", "production-aurora"), rds("cluster", "production-aurora", PRODUCTION)):
            self.refused(Request("rds:StopDBCluster", {arn: {}}))
            self.refused(Request("rds:AddTagsToResource", {arn: {}}, tags=STAGED))
        self.refused(Request("ecs:UpdateService", {self.service: {}}))

    def test_scalable_targets_only_of_ecs_services_desired_count(self):
        target = f"arn:aws:application-autoscaling:{REGION}:{STAGING}:scalable-target/0ec1"
        ecs = {"application-autoscaling:service-namespace": "ecs",
               "application-autoscaling:scalable-dimension": "ecs:service:DesiredCount"}
        self.allowed(Request("application-autoscaling:RegisterScalableTarget", {target: {}}, context=ecs))
        self.refused(Request("application-autoscaling:RegisterScalableTarget", {target: {}},
                             context=ecs | {"application-autoscaling:service-namespace": "dynamodb"}))


class TheMirrorRole(Case):
    role = "MirrorFunctionRole"
    here = {"s3:ResourceAccount": STAGING}

    def test_writes_and_deletes_only_in_the_configured_target(self):
        # samconfig staging: MirrorBuckets=production-assets=staging-assets
        self.allowed(Request("s3:PutObject", {"arn:aws:s3:::staging-assets/a/b.png": {}}, context=self.here))
        self.allowed(Request("s3:DeleteObject", {"arn:aws:s3:::staging-assets/a/b.png": {}}, context=self.here))
        self.allowed(Request("s3:ListBucket", {"arn:aws:s3:::staging-assets": {}}, context=self.here))
        for arn in ("arn:aws:s3:::production-assets/a.png", "arn:aws:s3:::other-staging/a.png"):
            self.refused(Request("s3:PutObject", {arn: {}}, context=self.here))
            self.refused(Request("s3:DeleteObject", {arn: {}}, context=self.here))

    def test_reads_only_the_configured_sources_under_their_prefix(self):
        self.allowed(Request("s3:GetObject", {"arn:aws:s3:::production-assets/a.png": {}}))
        self.allowed(Request("s3:ListBucket", {"arn:aws:s3:::production-assets": {}}))
        self.refused(Request("s3:GetObject", {"arn:aws:s3:::production-secrets/a.png": {}}))
        buckets = "prod-media/uploads/=staging-media, prod-files=staging-files"
        self.allowed(Request("s3:GetObject", {"arn:aws:s3:::prod-media/uploads/a.png": {}}), MirrorBuckets=buckets)
        self.allowed(Request("s3:GetObject", {"arn:aws:s3:::prod-files/x": {}}), MirrorBuckets=buckets)
        self.refused(Request("s3:GetObject", {"arn:aws:s3:::prod-media/private/a.png": {}}), MirrorBuckets=buckets)
        self.allowed(Request("s3:PutObject", {"arn:aws:s3:::staging-media/uploads/a.png": {}}, context=self.here),
                     MirrorBuckets=buckets)
        self.refused(Request("s3:PutObject", {"arn:aws:s3:::prod-media/uploads/a.png": {}}, context=self.here),
                     MirrorBuckets=buckets)


class TheProductionRole(Case):
    env = "production-access"
    role = "UnderstudyProductionRole"
    source = rds("cluster", "production-aurora", PRODUCTION)  # samconfig production-access DatabaseSource
    ours = rds("cluster-snapshot", f"understudy-{RUN}", PRODUCTION)
    managed = {"understudy:managed": "true", "understudy:run": RUN, "understudy:source": "production-aurora"}

    def test_snapshots_only_the_configured_source_under_understudys_name(self):
        self.allowed(Request("rds:CreateDBClusterSnapshot", {self.source: {}, self.ours: {}}, tags=self.managed))
        self.refused(Request("rds:CreateDBClusterSnapshot",
                             {rds("cluster", "billing", PRODUCTION): {}, self.ours: {}}, tags=self.managed))
        self.refused(Request("rds:CreateDBClusterSnapshot",
                             {self.source: {}, rds("cluster-snapshot", "nightly", PRODUCTION): {}}, tags=self.managed))

    def test_shares_copies_and_deletes_only_understudy_named_managed_snapshots(self):
        share = rds("cluster-snapshot", f"understudy-{RUN}-share", PRODUCTION)
        self.allowed(Request("rds:CopyDBClusterSnapshot", {self.ours: self.managed, share: {}}, tags=self.managed))
        self.allowed(Request("rds:ModifyDBClusterSnapshotAttribute", {share: self.managed}))
        self.allowed(Request("rds:DeleteDBClusterSnapshot", {share: self.managed}))
        nightly = rds("cluster-snapshot", "nightly", PRODUCTION)
        self.refused(Request("rds:DeleteDBClusterSnapshot", {nightly: {"understudy:managed": "true"}}))
        self.refused(Request("rds:ModifyDBClusterSnapshotAttribute", {self.ours: {}}))
        self.refused(Request("rds:AddTagsToResource", {nightly: {}}, tags={"understudy:managed": "true"}))

    def test_no_database_can_be_changed(self):
        for action in ("rds:DeleteDBCluster", "rds:ModifyDBCluster", "rds:StopDBCluster", "rds:AddTagsToResource"):
            self.refused(Request(action, {self.source: {}}, tags={"understudy:managed": "true"}))


class TheEvaluatorRefusesWhatItCannotRead(unittest.TestCase):
    def test_an_unknown_operator_is_a_refusal(self):
        statement = {"Effect": "Allow", "Action": "rds:StopDBCluster", "Resource": "*",
                     "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/understudy:environment": "staging"}}}
        ok, _ = decide([statement], Request("rds:StopDBCluster", {rds("cluster", "x"): STAGED}))
        self.assertFalse(ok)
        statement["Condition"] = {"StringEquals": statement["Condition"]["StringEqualsIfExists"]}
        ok, why = decide([statement], Request("rds:StopDBCluster", {rds("cluster", "x"): STAGED}))
        self.assertTrue(ok, why)

    def test_a_deny_wins_and_each_resource_needs_an_allow(self):
        allow = {"Effect": "Allow", "Action": "rds:*", "Resource": "*"}
        deny = {"Effect": "Deny", "Action": "rds:Delete*", "Resource": rds("cluster", "prod")}
        self.assertFalse(decide([allow, deny], Request("rds:DeleteDBCluster", {rds("cluster", "prod"): {}}))[0])
        self.assertTrue(decide([allow, deny], Request("rds:StopDBCluster", {rds("cluster", "prod"): {}}))[0])
        one = {"Effect": "Allow", "Action": "rds:CreateDBClusterSnapshot", "Resource": rds("cluster", "a")}
        self.assertFalse(decide([one], Request("rds:CreateDBClusterSnapshot",
                                               {rds("cluster", "a"): {}, rds("cluster-snapshot", "s"): {}}))[0])


if __name__ == "__main__":
    unittest.main()
