"""Self-test of the launcher's request recorder and fault injection (traffic.py),
through the invoke host's /understudy/requests and /understudy/faults endpoints.

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import datetime
import json
import unittest
import urllib.request
from typing import Any, Callable
from unittest import mock

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from test_stack import PRODUCTION_ROLE, REGION, SharedStackTestCase
from traffic import Call

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
            RoleArn=PRODUCTION_ROLE, RoleSessionName="recorder"
        )["Credentials"]
        prod_s3 = self.client("s3", credentials)
        prod_s3.create_bucket(Bucket="prod-assets")
        prod_s3.put_object(Bucket="prod-assets", Key="a b+c.txt", Body=b"x")
        prod_s3.head_object(Bucket="prod-assets", Key="a b+c.txt")
        self.client("secretsmanager").create_secret(Name="staging-db", SecretString="s3cret-value")
        self.client("stepfunctions").list_state_machines()
        self.assertEqual(self.requests(), [
            {"account": STAGING, "service": "rds", "action": "DescribeDBClusters", "mutating": False,
             "identifier": None, "identifiers": [], "status": 200, "injected": None},
            {"account": STAGING, "service": "rds", "action": "DeleteDBCluster", "mutating": True,
             "identifier": "nope", "identifiers": ["nope"], "status": 404, "injected": None},
            {"account": STAGING, "service": "sts", "action": "AssumeRole", "mutating": False,
             "identifier": PRODUCTION_ROLE, "identifiers": [PRODUCTION_ROLE], "status": 200, "injected": None},
            {"account": PRODUCTION, "service": "s3", "action": "CreateBucket", "mutating": True,
             "identifier": "prod-assets", "identifiers": ["prod-assets"], "status": 200, "injected": None},
            {"account": PRODUCTION, "service": "s3", "action": "PutObject", "mutating": True,
             "identifier": "prod-assets", "identifiers": ["prod-assets"], "status": 200, "injected": None},
            {"account": PRODUCTION, "service": "s3", "action": "HeadObject", "mutating": False,
             "identifier": "prod-assets", "identifiers": ["prod-assets"], "status": 200, "injected": None},
            {"account": STAGING, "service": "secretsmanager", "action": "CreateSecret", "mutating": True,
             "identifier": "staging-db", "identifiers": ["staging-db"], "status": 200, "injected": None},
            {"account": STAGING, "service": "stepfunctions", "action": "ListStateMachines", "mutating": False,
             "identifier": None, "identifiers": [], "status": 200, "injected": None},
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

    # The services scale-to-zero uses: ECS and Application Auto Scaling (JSON 1.1),
    # Auto Scaling (Query), EC2 (EC2 Query), tagging (JSON 1.1), CloudWatch (RPC v2 CBOR
    # from the Rust SDK, JSON from boto3).

    def seed_scale_resources(self) -> dict[str, Any]:
        """An ECS service with a scalable target, an Auto Scaling group and two instances."""
        ecs, ec2, autoscaling = self.client("ecs"), self.client("ec2"), self.client("autoscaling")
        ecs.create_cluster(clusterName="rec-cluster")
        service = ecs.create_service(cluster="rec-cluster", serviceName="rec-api", desiredCount=2)["service"]
        self.client("application-autoscaling").register_scalable_target(
            ServiceNamespace="ecs", ResourceId="service/rec-cluster/rec-api",
            ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=4)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        autoscaling.create_launch_configuration(LaunchConfigurationName="rec-lc", ImageId=image,
                                                InstanceType="t3.micro")
        autoscaling.create_auto_scaling_group(AutoScalingGroupName="rec-workers", LaunchConfigurationName="rec-lc",
                                              MinSize=0, MaxSize=2, DesiredCapacity=1,
                                              AvailabilityZones=[f"{REGION}a"])
        instances = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]]
        self.control("/understudy/requests", method="DELETE")
        return {"service_arn": service["serviceArn"], "instances": instances}

    def cbor_client(self, service: str):
        """A client speaking Smithy RPC v2 CBOR, as the Rust SDK does for CloudWatch
        (boto3 prefers JSON)."""
        with mock.patch("botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", ("smithy-rpc-v2-cbor",)):
            client = boto3.session.Session().client(
                service, endpoint_url=self.moto_endpoint, region_name=REGION, aws_access_key_id="testing",
                aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))
            self.assertEqual(client.meta.service_model.resolved_protocol, "smithy-rpc-v2-cbor")
        return client

    def test_records_the_scale_to_zero_services_with_their_resources(self) -> None:
        seeded = self.seed_scale_resources()
        first, second = seeded["instances"]
        ecs, ec2, autoscaling = self.client("ecs"), self.client("ec2"), self.client("autoscaling")
        aas = self.client("application-autoscaling")
        tag = [{"key": "understudy:sleep:state", "value": "asleep"}]
        self.client("resourcegroupstaggingapi").get_resources(
            TagFilters=[{"Key": "understudy:environment", "Values": ["staging"]}])
        ecs.list_services(cluster="rec-cluster")
        ecs.describe_services(cluster="rec-cluster", services=["rec-api"])
        ecs.describe_services(cluster="rec-cluster", services=["rec-api", "rec-other"])
        ecs.list_tags_for_resource(resourceArn=seeded["service_arn"])
        ecs.tag_resource(resourceArn=seeded["service_arn"], tags=tag)
        ecs.update_service(cluster="rec-cluster", service="rec-api", desiredCount=0)
        ecs.untag_resource(resourceArn=seeded["service_arn"], tagKeys=["understudy:sleep:state"])
        aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=["service/rec-cluster/rec-api"])
        aas.register_scalable_target(ServiceNamespace="ecs", ResourceId="service/rec-cluster/rec-api",
                                     ScalableDimension="ecs:service:DesiredCount", MinCapacity=0, MaxCapacity=0)
        autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["rec-workers"])
        autoscaling.create_or_update_tags(Tags=[{"ResourceId": "rec-workers", "ResourceType": "auto-scaling-group",
                                                 "Key": "understudy:sleep:desired", "Value": "1",
                                                 "PropagateAtLaunch": False}])
        autoscaling.update_auto_scaling_group(AutoScalingGroupName="rec-workers", MinSize=0, DesiredCapacity=0)
        autoscaling.delete_tags(Tags=[{"ResourceId": "rec-workers", "ResourceType": "auto-scaling-group",
                                       "Key": "understudy:sleep:desired"}])
        ec2.describe_instances(InstanceIds=[first, second])
        ec2.create_tags(Resources=[first, second], Tags=[{"Key": "understudy:sleep:state", "Value": "asleep"}])
        ec2.stop_instances(InstanceIds=[second])
        ec2.start_instances(InstanceIds=[second])
        ec2.delete_tags(Resources=[first], Tags=[{"Key": "understudy:sleep:state"}])
        window = {"StartTime": datetime.datetime(2024, 1, 1), "EndTime": datetime.datetime(2024, 1, 1, 1)}
        metric = {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount"}
        self.client("cloudwatch").get_metric_statistics(**metric, **window, Period=60, Statistics=["Sum"])
        with self.assertRaises(Exception):  # moto 5.2.5 cannot answer CBOR; the recorder still tells the call
            self.cbor_client("cloudwatch").get_metric_data(
                MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}}],
                **window)
        api = "service/rec-cluster/rec-api"
        self.assertEqual(
            [(r["service"], r["action"], r["mutating"], r["identifier"], r["identifiers"]) for r in self.requests()],
            [
                ("resourcegroupstaggingapi", "GetResources", False, None, []),
                ("ecs", "ListServices", False, "rec-cluster", ["rec-cluster"]),
                ("ecs", "DescribeServices", False, "rec-api", ["rec-api"]),
                ("ecs", "DescribeServices", False, "rec-api", ["rec-api", "rec-other"]),
                ("ecs", "ListTagsForResource", False, seeded["service_arn"], [seeded["service_arn"]]),
                ("ecs", "TagResource", True, seeded["service_arn"], [seeded["service_arn"]]),
                ("ecs", "UpdateService", True, "rec-api", ["rec-api"]),
                ("ecs", "UntagResource", True, seeded["service_arn"], [seeded["service_arn"]]),
                ("application-autoscaling", "DescribeScalableTargets", False, api, [api]),
                ("application-autoscaling", "RegisterScalableTarget", True, api, [api]),
                ("autoscaling", "DescribeAutoScalingGroups", False, "rec-workers", ["rec-workers"]),
                ("autoscaling", "CreateOrUpdateTags", True, "rec-workers", ["rec-workers"]),
                ("autoscaling", "UpdateAutoScalingGroup", True, "rec-workers", ["rec-workers"]),
                ("autoscaling", "DeleteTags", True, "rec-workers", ["rec-workers"]),
                ("ec2", "DescribeInstances", False, first, [first, second]),
                ("ec2", "CreateTags", True, first, [first, second]),
                ("ec2", "StopInstances", True, second, [second]),
                ("ec2", "StartInstances", True, second, [second]),
                ("ec2", "DeleteTags", True, first, [first]),
                ("cloudwatch", "GetMetricStatistics", False, None, []),
                ("cloudwatch", "GetMetricData", False, None, []),
            ],
        )

    def raw_bodies(self, client) -> list[bytes]:
        """The raw bodies of the client's responses, as they come off the wire."""
        bodies: list[bytes] = []
        client.meta.events.register("before-parse", lambda response_dict, **_: bodies.append(response_dict["body"]))
        return bodies

    def fresh_client(self, service: str):
        return boto3.session.Session().client(
            service, endpoint_url=self.moto_endpoint, region_name=REGION, aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))

    def test_faults_on_the_scale_to_zero_services_speak_their_wire_formats(self) -> None:
        seeded = self.seed_scale_resources()
        first, second = seeded["instances"]
        # ECS: JSON 1.1, `__type` and x-amzn-ErrorType; narrowed to the service by identifier.
        ecs = self.fresh_client("ecs")
        bodies = self.raw_bodies(ecs)
        self.add_fault(service="ecs", action="UpdateService", code="ThrottlingException", identifier="rec-api")
        self.assertEqual(self.error_of(ecs.update_service, cluster="rec-cluster", service="rec-api",
                                       desiredCount=0)[::2], ("ThrottlingException", 400))
        self.assertEqual(json.loads(bodies[-1])["__type"], "ThrottlingException")
        # Application Auto Scaling: JSON 1.1 by its signing name.
        aas = self.fresh_client("application-autoscaling")
        bodies = self.raw_bodies(aas)
        self.add_fault(service="application-autoscaling", action="RegisterScalableTarget",
                       code="ThrottlingException", identifier="service/rec-cluster/rec-api")
        self.assertEqual(
            self.error_of(aas.register_scalable_target, ServiceNamespace="ecs",
                          ResourceId="service/rec-cluster/rec-api", ScalableDimension="ecs:service:DesiredCount",
                          MinCapacity=0, MaxCapacity=0)[::2],
            ("ThrottlingException", 400))
        self.assertEqual(json.loads(bodies[-1])["__type"], "ThrottlingException")
        # Auto Scaling: Query XML ErrorResponse.
        autoscaling = self.fresh_client("autoscaling")
        bodies = self.raw_bodies(autoscaling)
        self.add_fault(service="autoscaling", action="UpdateAutoScalingGroup", code="Throttling")
        self.assertEqual(self.error_of(autoscaling.update_auto_scaling_group, AutoScalingGroupName="rec-workers",
                                       DesiredCapacity=0)[::2], ("Throttling", 400))
        self.assertIn(b"<ErrorResponse", bodies[-1])
        self.assertIn(b"<Code>Throttling</Code>", bodies[-1])
        # EC2: its own `Response` document, RequestLimitExceeded as a 503 (as EC2 answers it);
        # a fault on one instance fails the batched call naming it, not the others.
        ec2 = self.fresh_client("ec2")
        bodies = self.raw_bodies(ec2)
        self.add_fault(service="ec2", action="StopInstances", code="RequestLimitExceeded", identifier=second)
        ec2.stop_instances(InstanceIds=[first])
        self.assertEqual(self.error_of(ec2.stop_instances, InstanceIds=[first, second])[::2],
                         ("RequestLimitExceeded", 503))
        self.assertRegex(bodies[-1].replace(b"\n", b""),
                         rb"<Response[^>]*><Errors><Error><Code>RequestLimitExceeded</Code>")
        # Tagging, by its signing name.
        self.add_fault(service="tagging", action="GetResources", code="ThrottledException")
        self.assertEqual(self.error_of(self.fresh_client("resourcegroupstaggingapi").get_resources)[::2],
                         ("ThrottledException", 400))
        # CloudWatch over RPC v2 CBOR (moto has no CBOR serializer of its own).
        cloudwatch = self.cbor_client("cloudwatch")
        self.add_fault(service="monitoring", action="GetMetricData", code="Throttling")
        self.assertEqual(
            self.error_of(cloudwatch.get_metric_data, MetricDataQueries=[], StartTime=datetime.datetime(2024, 1, 1),
                          EndTime=datetime.datetime(2024, 1, 2))[::2],
            ("Throttling", 400))
        self.assertEqual(
            [(r["service"], r["action"], r["identifiers"], r["injected"]) for r in self.requests()],
            [
                ("ecs", "UpdateService", ["rec-api"], "ThrottlingException"),
                ("application-autoscaling", "RegisterScalableTarget", ["service/rec-cluster/rec-api"],
                 "ThrottlingException"),
                ("autoscaling", "UpdateAutoScalingGroup", ["rec-workers"], "Throttling"),
                ("ec2", "StopInstances", [first], None),
                ("ec2", "StopInstances", [first, second], "RequestLimitExceeded"),
                ("resourcegroupstaggingapi", "GetResources", [], "ThrottledException"),
                ("cloudwatch", "GetMetricData", [], "Throttling"),
            ],
        )

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


class MutatingTest(unittest.TestCase):
    """Which calls of scale-to-zero's services count as changes (no stack needed)."""

    def test_reads_and_changes(self) -> None:
        reads = [("ecs", "DescribeServices"), ("ecs", "ListServices"), ("ecs", "ListTagsForResource"),
                 ("application-autoscaling", "DescribeScalableTargets"),
                 ("autoscaling", "DescribeAutoScalingGroups"), ("autoscaling", "DescribeTags"),
                 ("ec2", "DescribeInstances"), ("ec2", "DescribeTags"),
                 ("resourcegroupstaggingapi", "GetResources"), ("cloudwatch", "GetMetricData"),
                 ("cloudwatch", "GetMetricStatistics"), ("rds", "DescribeDBInstances"),
                 ("rds", "DescribeDBClusters"), ("rds", "ListTagsForResource")]
        changes = [("ecs", "UpdateService"), ("ecs", "TagResource"), ("ecs", "UntagResource"),
                   ("application-autoscaling", "RegisterScalableTarget"),
                   ("autoscaling", "UpdateAutoScalingGroup"), ("autoscaling", "CreateOrUpdateTags"),
                   ("autoscaling", "DeleteTags"), ("ec2", "StartInstances"), ("ec2", "StopInstances"),
                   ("ec2", "CreateTags"), ("ec2", "DeleteTags"), ("rds", "StopDBInstance"),
                   ("rds", "StartDBInstance"), ("rds", "StopDBCluster"), ("rds", "StartDBCluster"),
                   ("rds", "ModifyDBCluster"), ("rds", "AddTagsToResource"), ("rds", "RemoveTagsFromResource"),
                   ("ecs", None)]
        for service, action in reads + changes:
            call = Call(STAGING, service, action, None)
            self.assertEqual(call.mutating, (service, action) in changes, (service, action))


if __name__ == "__main__":
    unittest.main()
