"""samconfig.toml: every environment deploys what README says, with parameters the
template accepts (checked as CloudFormation checks them, sam_template.parameter_values)."""

from __future__ import annotations

import unittest

import sam_template
import samconfig

STAGING_SIDE = ("staging", "one-account", "sleep-only")
# What ties a stack to production: none of it in a sleep-only stack.
PRODUCTION_PARAMETERS = {
    "ProductionAccountId", "ProductionRegion", "ProductionRoleArn", "ProductionExternalId",
    "DatabaseSource", "DatabaseTarget", "DatabasePasswordSecretArn", "MirrorBuckets",
    "ProductionServiceArns", "ProductionPipelineName",
}


class SamConfigTest(unittest.TestCase):
    def setUp(self):
        self.config = samconfig.load()

    def test_the_environments_readme_names(self):
        self.assertEqual(samconfig.environments(self.config),
                         ["staging", "production-access", "one-account", "sleep-only"])

    def test_sam_build_builds_the_staging_template_with_cargo_lambda(self):
        build = self.config["default"]["build"]["parameters"]
        self.assertEqual(build["template_file"], "infra/template.yaml")
        self.assertIs(build["beta_features"], True, "rust-cargolambda is a beta feature of sam build")
        self.assertNotIn("global", self.config["default"],
                         "a global template_file would make sam deploy package the raw source")

    def test_staging_side_environments_deploy_the_built_template(self):
        for env in STAGING_SIDE:
            with self.subTest(env=env):
                table = self.config[env]["deploy"]["parameters"]
                self.assertNotIn("template_file", table, "sam deploy must find .aws-sam/build/template.yaml")
                self.assertEqual(samconfig.template(env, self.config), samconfig.ROOT / "infra/template.yaml")
                self.assertEqual(table["stack_name"], "understudy-staging")

    def test_production_access_deploys_its_own_template(self):
        self.assertEqual(samconfig.template("production-access", self.config),
                         samconfig.ROOT / "infra/production-access.yaml")
        self.assertEqual(self.config["production-access"]["deploy"]["parameters"]["capabilities"],
                         "CAPABILITY_NAMED_IAM", "its role has a fixed name")

    def test_every_environment_passes_its_templates_parameter_checks(self):
        for env in samconfig.environments(self.config):
            with self.subTest(env=env):
                template = sam_template.load_template(samconfig.template(env, self.config))
                sam_template.parameter_values(template, samconfig.parameters(env, self.config))

    def test_sleep_only_names_no_production_parameter(self):
        given = set(samconfig.parameters("sleep-only", self.config))
        self.assertEqual(given & PRODUCTION_PARAMETERS, set())
        self.assertEqual(samconfig.parameters("sleep-only", self.config)["DeployEventSource"], "")

    def test_every_parameter_of_both_templates_is_described(self):
        for env in ("staging", "production-access"):
            template = sam_template.load_template(samconfig.template(env, self.config))
            for name, spec in template["Parameters"].items():
                with self.subTest(parameter=name):
                    self.assertGreater(len(str(spec.get("Description", "")).strip()), 10)

    def test_a_bad_override_is_refused_naming_it(self):
        bad = {"x": {"deploy": {"parameters": {"parameter_overrides": ["Fine=1", "NoEquals"]}}}}
        with self.assertRaisesRegex(samconfig.SamConfigError, "'NoEquals' is not Key=Value"):
            samconfig.parameters("x", bad)
        twice = {"x": {"deploy": {"parameters": {"parameter_overrides": "A=1 A=2"}}}}
        with self.assertRaisesRegex(samconfig.SamConfigError, "A is given twice"):
            samconfig.parameters("x", twice)
        with self.assertRaisesRegex(samconfig.SamConfigError, r"no \[nope.deploy.parameters\]"):
            samconfig.parameters("nope", bad)
        template = sam_template.load_template(samconfig.template("staging", self.config))
        with self.assertRaisesRegex(sam_template.TemplateError, "Tracing"):
            sam_template.parameter_values(template, {"Tracing": "Sometimes"})

    def test_the_string_form_is_read_as_sam_reads_it(self):
        config = {"x": {"deploy": {"parameters": {"parameter_overrides": 'A=1 B="two words" C='}}}}
        self.assertEqual(samconfig.parameters("x", config), {"A": "1", "B": "two words", "C": ""})


if __name__ == "__main__":
    unittest.main()
