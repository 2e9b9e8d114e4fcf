"""Self-test of the launcher's request recorder and fault injection (traffic.py),
through the invoke host's /understudy/requests and /understudy/faults endpoints.

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import json
import unittest
import urllib.request
from typing import Any, Callable

from botocore.exceptions import ClientError

from test_stack import SharedStackTestCase

STAGING = "123456789012"
PRODUCTION = "111111111111"


class TrafficTest(SharedStackTestCase):
    def setUp(self) -> None:
        self.assertEqual(self.control("/understudy/faults", method="DELETE"), (200, {"faults": []}))
        self.assertEqual(self.control("/understudy/requests", method="DELETE"), (200, {"requests": []}))

    def tearDown(self) -> None:
        self.control("/understudy/faults", method="DELETE")  # none may outlive its test

    def requests(self) -> list[dict[str, Any]]:
        status, body = self.control("/understudy/requests")
        self.assertEqual(status, 200)
        return body["requests"]

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        status, body = self.control("/understudy/faults", spec)
        self.assertEqual(status, 200, body)
        return body

    def error_of(self, call: Callable, **kwargs: Any) -> tuple[str, str, int]:
        with self.assertRaises(ClientError) as raised:
            call(**kwargs)
        response = raised.exception.response
        return response["Error"]["Code"], response["Error"].get("Message", ""), response["ResponseMetadata"]["HTTPStatusCode"]

    def test_records_every_request_with_the_account_moto_acts_in(self) -> None:
        rds = self.client("rds")
        rds.describe_db_clusters()
        with self.assertRaises(ClientError):
            rds.delete_db_cluster(DBClusterIdentifier="nope", SkipFinalSnapshot=True)
        credentials = self.client("sts").assume_role(
            RoleArn="arn:aws:iam::111111111111:role/understudy-production", RoleSessionName="recorder"
        )["Credentials"]
        prod_s3 = self.client("s3", credentials)
        prod_s3.create_bucket(Bucket="prod-assets")
        prod_s3.put_object(Bucket="prod-assets", Key="a b+c.txt", Body=b"x")
        prod_s3.head_object(Bucket="prod-assets", Key="a b+c.txt")
        self.client("secretsmanager").create_secret(Name="staging-db", SecretString="s3cret-value")
        self.client("stepfunctions").list_state_machines()
        self.assertEqual(self.requests(), [
            {"account": STAGING, "service": "rds", "action": "DescribeDBClusters", "mutating": False,
             "identifier": None, "status": 200, "injected": None},
            {"account": STAGING, "service": "rds", "action": "DeleteDBCluster", "mutating": True,
             "identifier": "nope", "status": 404, "injected": None},
            {"account": STAGING, "service": "sts", "action": "AssumeRole", "mutating": False,
             "identifier": "arn:aws:iam::111111111111:role/understudy-production", "status": 200, "injected": None},
            {"account": PRODUCTION, "service": "s3", "action": "CreateBucket", "mutating": True,
             "identifier": "prod-assets", "status": 200, "injected": None},
            {"account": PRODUCTION, "service": "s3", "action": "PutObject", "mutating": True,
             "identifier": "prod-assets", "status": 200, "injected": None},
            {"account": PRODUCTION, "service": "s3", "action": "HeadObject", "mutating": False,
             "identifier": "prod-assets", "status": 200, "injected": None},
            {"account": STAGING, "service": "secretsmanager", "action": "CreateSecret", "mutating": True,
             "identifier": "staging-db", "status": 200, "injected": None},
            {"account": STAGING, "service": "stepfunctions", "action": "ListStateMachines", "mutating": False,
             "identifier": None, "status": 200, "injected": None},
        ])
        self.assertNotIn("s3cret-value", str(self.requests()))  # parameters are not recorded

    def test_fault_fails_the_nth_matching_call_before_moto_sees_it(self) -> None:
        rds = self.client("rds")
        rds.create_db_cluster(DBClusterIdentifier="target", Engine="aurora-postgresql",
                              MasterUsername="stguser", MasterUserPassword="staging-pass-1")
        fault = self.add_fault(service="rds", action="ModifyDBCluster", nth=2, code="InternalFailure",
                               status=500, message="injected")
        self.assertEqual(self.control("/understudy/faults"), (200, {"faults": [fault]}))
        self.assertEqual((fault["skip"], fault["times"]), (1, 1))
        rds.modify_db_cluster(DBClusterIdentifier="target", DeletionProtection=True, ApplyImmediately=True)
        self.assertEqual(
            self.error_of(rds.modify_db_cluster, DBClusterIdentifier="target", DeletionProtection=False,
                          ApplyImmediately=True),
            ("InternalFailure", "injected", 500),
        )
        # moto never saw the failed call: the cluster is still protected.
        self.assertTrue(rds.describe_db_clusters(DBClusterIdentifier="target")["DBClusters"][0]["DeletionProtection"])
        rds.modify_db_cluster(DBClusterIdentifier="target", DeletionProtection=False, ApplyImmediately=True)
        self.assertEqual(self.control("/understudy/faults"), (200, {"faults": []}))
        injected = [(r["action"], r["injected"], r["status"]) for r in self.requests() if r["action"] == "ModifyDBCluster"]
        self.assertEqual(injected, [("ModifyDBCluster", None, 200), ("ModifyDBCluster", "InternalFailure", 500),
                                    ("ModifyDBCluster", None, 200)])

    def test_faults_speak_each_services_wire_format_and_filter_by_account(self) -> None:
        # JSON protocol (kms), for production only: staging's call goes through.
        self.add_fault(service="kms", action="DescribeKey", code="KMSInternalException", account=PRODUCTION, times=2)
        self.client("kms").describe_key(KeyId="alias/aws/rds")
        prod_kms = self.production_client("kms")
        for _ in range(2):
            self.assertEqual(self.error_of(prod_kms.describe_key, KeyId="alias/aws/rds")[0], "KMSInternalException")
        prod_kms.describe_key(KeyId="alias/aws/rds")
        # REST-XML (s3), by the signing name's service; Query (sts) with the modelled status.
        s3 = self.client("s3")
        s3.create_bucket(Bucket="assets")
        self.add_fault(service="s3", action="PutObject", code="SlowDown", identifier="assets")
        self.assertEqual(self.error_of(s3.put_object, Bucket="assets", Key="k", Body=b"x")[::2], ("SlowDown", 503))
        self.add_fault(service="sts", action="AssumeRole", code="RegionDisabledException")
        self.assertEqual(
            self.error_of(self.client("sts").assume_role, RoleArn="arn:aws:iam::111111111111:role/x",
                          RoleSessionName="s1")[::2],
            ("RegionDisabledException", 403),
        )
        # JSON 1.0 (states), named by its IAM prefix.
        self.add_fault(service="states", action="ListStateMachines", code="ThrottlingException")
        self.assertEqual(self.error_of(self.client("stepfunctions").list_state_machines)[::2],
                         ("ThrottlingException", 400))

    def test_faults_apply_to_requests_forwarded_by_the_invoke_host(self) -> None:
        # moto's Step Functions integrations call the invoke host, which forwards to moto.
        forwarded = self.client("s3", endpoint=self.invoke_endpoint)
        self.add_fault(service="s3", action="ListObjectsV2", code="InternalError")
        self.client("s3").create_bucket(Bucket="items")
        self.assertEqual(self.error_of(forwarded.list_objects_v2, Bucket="items")[::2], ("InternalError", 500))
        forwarded.list_objects_v2(Bucket="items")
        self.assertEqual([(r["action"], r["injected"]) for r in self.requests()],
                         [("CreateBucket", None), ("ListObjectsV2", "InternalError"), ("ListObjectsV2", None)])

    def test_control_endpoints_check_their_input(self) -> None:
        for spec in ({"service": "rds", "action": "X"}, {"service": "rds", "action": "X", "code": "C", "nth": 0},
                     {"service": "rds", "action": "X", "code": "C", "status": 200}, ["rds"]):
            self.assertEqual(self.control("/understudy/faults", spec)[0], 400, spec)
        self.assertEqual(self.control("/understudy/faults"), (200, {"faults": []}))
        self.add_fault(service="rds", action="X", code="C", times=3)
        self.assertEqual(len(self.control("/understudy/faults")[1]["faults"]), 1)
        self.assertEqual(self.control("/understudy/faults", method="DELETE"), (200, {"faults": []}))
        # moto's own API is neither recorded nor failed.
        with urllib.request.urlopen(f"{self.moto_endpoint}/moto-api/config") as response:
            self.assertIn("lambda", json.load(response))
        self.assertEqual(self.requests(), [])


if __name__ == "__main__":
    unittest.main()
