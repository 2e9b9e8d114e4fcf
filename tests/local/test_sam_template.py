"""Self-test of sam_template's CloudFormation resolution: what deploy.py relies on to
deploy the template's rules (a list parameter, GetAtt, a resource's Condition).

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import unittest

import sam_template

TEMPLATE = {
    "Parameters": {
        "Services": {"Type": "CommaDelimitedList", "Default": ""},
        "Pipeline": {"Type": "String", "Default": ""},
    },
    "Conditions": {
        "HasServices": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": [",", {"Ref": "Services"}]}, ""]}]},
        "HasPipeline": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Pipeline"}, ""]}]},
    },
    "Resources": {
        "EcsRule": {"Type": "AWS::Events::Rule", "Condition": "HasServices",
                    "Properties": {"EventPattern": {"resources": {"Ref": "Services"}},
                                   "Targets": [{"Id": "t", "Arn": {"Fn::GetAtt": "Fn.Arn"}}]}},
        "PipelineRule": {"Type": "AWS::Events::Rule", "Condition": "HasPipeline", "Properties": {}},
        "Always": {"Type": "AWS::Events::Rule", "Properties": {}},
        "PipelineFunction": {"Type": "AWS::Serverless::Function", "Condition": "HasPipeline",
                             "Metadata": {"BuildProperties": {"Binary": "trigger"}}, "Properties": {}},
        "OtherFunction": {"Type": "AWS::Serverless::Function",
                          "Metadata": {"BuildProperties": {"Binary": "other"}}, "Properties": {}},
    },
}


def deployment(**parameters: str) -> sam_template.Deployment:
    return sam_template.Deployment(
        parameters=sam_template.parameter_values(TEMPLATE, parameters), pseudo={}, resources={},
        attributes={"Fn.Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn"},
    )


class SamTemplateTest(unittest.TestCase):
    def test_a_list_parameters_ref_is_a_list_and_its_join_the_text(self) -> None:
        deployed = deployment(Services="a, b")
        self.assertEqual(sam_template.resolve({"Ref": "Services"}, TEMPLATE, deployed), ["a", "b"])
        self.assertEqual(sam_template.resolve({"Fn::Join": [",", {"Ref": "Services"}]}, TEMPLATE, deployed), "a,b")
        self.assertEqual(sam_template.resolve({"Fn::Join": [",", {"Ref": "Services"}]}, TEMPLATE, deployment()), "")

    def test_resources_whose_condition_fails_are_not_deployed(self) -> None:
        names = [name for name, _ in sam_template.resources_of(TEMPLATE, "AWS::Events::Rule", deployment())]
        self.assertEqual(names, ["Always"])
        deployed = deployment(Services="a", Pipeline="p")
        found = dict(sam_template.resources_of(TEMPLATE, "AWS::Events::Rule", deployed))
        self.assertEqual(list(found), ["EcsRule", "PipelineRule", "Always"])
        properties = sam_template.resolve(found["EcsRule"]["Properties"], TEMPLATE, deployed)
        self.assertEqual(properties["EventPattern"], {"resources": ["a"]})
        self.assertEqual(properties["Targets"][0]["Arn"], "arn:aws:lambda:us-east-1:123456789012:function:fn")

    def test_a_function_whose_condition_fails_is_left_out(self) -> None:
        self.assertEqual(sam_template.excluded_functions(TEMPLATE, deployment()), {"trigger"})
        self.assertEqual(sorted(sam_template.function_settings(TEMPLATE, deployment())), ["other"])
        self.assertEqual(sam_template.excluded_functions(TEMPLATE, deployment(Pipeline="p")), set())
        self.assertEqual(sorted(sam_template.function_settings(TEMPLATE, deployment(Pipeline="p"))), ["other", "trigger"])
        self.assertEqual(sorted(sam_template.function_settings(TEMPLATE)), ["other", "trigger"], "no deployment: all")

    def test_no_value_is_removed_from_lists_and_mappings(self) -> None:
        value = {"List": ["a", {"Fn::If": ["HasPipeline", "p", {"Ref": "AWS::NoValue"}]}],
                 "Key": {"Fn::If": ["HasPipeline", "p", {"Ref": "AWS::NoValue"}]}, "Other": 1}
        self.assertEqual(sam_template.resolve(value, TEMPLATE, deployment()), {"List": ["a"], "Other": 1})
        self.assertEqual(sam_template.resolve(value, TEMPLATE, deployment(Pipeline="x")),
                         {"List": ["a", "p"], "Key": "p", "Other": 1})

    def test_an_attribute_the_deployment_lacks_is_refused(self) -> None:
        with self.assertRaises(sam_template.TemplateError):
            sam_template.resolve({"Fn::GetAtt": ["Role", "Arn"]}, TEMPLATE, deployment())


if __name__ == "__main__":
    unittest.main()
