"""The IAM audit (iam_audit.py): both templates pass it with every deployment, and each
permanent failing fixture (tests/fixtures/iam-refused) is refused for its own reason."""

from __future__ import annotations

import json
import sys
import unittest
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import iam_audit  # noqa: E402
import sam_template  # noqa: E402
from iam_eval import arn_matches  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/iam-refused"


@lru_cache(maxsize=None)
def audited() -> tuple[tuple[str, tuple[iam_audit.Role, ...]], ...]:
    return tuple((label, tuple(iam_audit.stack_roles(path, parameters)))
                 for label, path, parameters in iam_audit.audited_deployments())


def role(found: tuple[iam_audit.Role, ...], name: str) -> iam_audit.Role:
    return next(r for r in found if r.name == name)


class TheTemplatesPassTheAudit(unittest.TestCase):
    def test_every_deployment_has_no_finding(self):
        labels = []
        for label, found in audited():
            labels.append(label)
            self.assertGreater(sum(len(r.statements()) for r in found), 0, label)
            self.assertEqual([str(f) for f in iam_audit.audit_roles(found)], [], label)
        self.assertIn("samconfig sleep-only", labels)
        self.assertIn("samconfig production-access", labels)
        self.assertIn("staging, StagingTagKey=Environment", labels)

    def test_the_expanded_template_holds_sams_policy_templates_and_the_stacks_managed_policies(self):
        found = dict(audited())["staging defaults"]
        refresh = role(found, "RefreshStateMachineRole").statements()
        self.assertTrue(any("lambda:InvokeFunction" in iam_audit.listify(s["Action"]) for s in refresh),
                        "LambdaInvokePolicy expanded")
        restore = role(found, "RestoreFunctionRole")
        self.assertIn("RestoreStagingPolicy", [where for where, _ in restore.policies])

    def test_the_conditions_follow_StagingTagKey(self):
        for label, key in (("staging defaults", "understudy:environment"),
                           ("staging, StagingTagKey=Environment", "Environment")):
            found = dict(audited())[label]
            text = json.dumps([r.statements() for r in found])
            self.assertIn(f"aws:ResourceTag/{key}", text, label)
            self.assertIn(f"aws:RequestTag/{key}", text, label)
        text = json.dumps([r.statements() for r in dict(audited())["staging, StagingTagKey=Environment"]])
        self.assertNotIn("understudy:environment", text)

    def test_a_tag_key_that_would_break_the_json_is_refused_by_the_parameter(self):
        template = sam_template.load_template(iam_audit.STAGING_TEMPLATE)
        for bad in ('env"x', "env\\x", "", "x" * 129):
            with self.assertRaises(sam_template.TemplateError, msg=bad):
                sam_template.parameter_values(template, {"StagingTagKey": bad})

    def test_the_production_role_trusts_only_the_roles_under_the_staging_stacks_path(self):
        staging = dict(audited())["samconfig staging"]
        production = dict(audited())["samconfig production-access"]
        trust = role(production, "UnderstudyProductionRole").trust["Statement"][0]
        pattern = trust["Condition"]["ArnLike"]["aws:PrincipalArn"]
        self.assertEqual(trust["Principal"]["AWS"], f"arn:aws:iam::{iam_audit.ACCOUNT}:root")
        expanded = iam_audit.expand(iam_audit.STAGING_TEMPLATE, {})
        deployment = iam_audit.deployment_for(expanded, {})
        for name in ("SnapshotFunctionRole", "ShareFunctionRole", "RestoreFunctionRole"):
            self.assertIn(name, [r.name for r in staging])
        for name, trusted in (("SnapshotFunctionRole", True), ("ShareFunctionRole", True),
                              ("RestoreFunctionRole", False), ("MirrorFunctionRole", False)):
            arn = deployment.attributes[f"{name}.Arn"]
            self.assertEqual(arn_matches(pattern, arn), trusted, arn)

    def test_the_external_id_is_no_echo_and_no_no_echo_value_reaches_a_state_machine(self):
        for path, name in ((iam_audit.STAGING_TEMPLATE, "ProductionExternalId"),
                           (iam_audit.PRODUCTION_TEMPLATE, "ExternalId")):
            template = sam_template.load_template(path)
            self.assertIs(template["Parameters"][name].get("NoEcho"), True, path)
        template = sam_template.load_template(iam_audit.STAGING_TEMPLATE)
        secret = "sentinel-external-id-1234"
        no_echo = [n for n, spec in template["Parameters"].items() if spec.get("NoEcho")]
        parameters = {n: secret for n in no_echo} | {"ProductionAccountId": "111111111111"}
        expanded = iam_audit.expand(iam_audit.STAGING_TEMPLATE, parameters)
        deployment = iam_audit.deployment_for(expanded, parameters)
        machines = sam_template.resources_of(expanded, "AWS::StepFunctions::StateMachine", deployment)
        self.assertGreater(len(machines), 3)
        for logical_id, machine in machines:
            properties = machine["Properties"]
            substituted = sam_template.resolve(properties.get("DefinitionSubstitutions", {}), expanded, deployment)
            self.assertNotIn(secret, json.dumps(substituted), logical_id)
            self.assertNotIn("ProductionExternalId", json.dumps(properties), logical_id)


class EachFixtureIsRefusedForItsReason(unittest.TestCase):
    def test_the_fixtures(self):
        fixtures = sorted(FIXTURES.glob("*.json"))
        self.assertGreaterEqual(len(fixtures), 10)
        for path in fixtures:
            case = json.loads(path.read_text())
            with self.subTest(fixture=path.name):
                if "trust" in case:
                    statements = {"Version": "2012-10-17", "Statement": []}
                    found = iam_audit.Role("Fixture", {"Statement": [case["trust"]]})
                else:
                    statements = {"Version": "2012-10-17", "Statement": [case["statement"]]}
                    found = iam_audit.Role("Fixture", {"Statement": []})
                found.policies.append((path.stem, statements))
                findings = [str(f) for f in iam_audit.audit_roles([found])]
                self.assertTrue(any(case["refused_for"] in f for f in findings),
                                f"{path.name} ({case['what']}) must be refused for '{case['refused_for']}'; "
                                f"the audit said {findings}")


if __name__ == "__main__":
    unittest.main()
