"""Fleet deployment documents for `aws greengrassv2 create-deployment --cli-input-json`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from vqitools.deployment import SiteError, deployment_document, load_site, local_overrides

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "scripts" / "sites" / "example.yaml"
NAMES = {"com.example.vqi.Model", "com.example.vqi.Inference", "com.example.vqi.ImageSource",
         "com.example.vqi.Uploader", "com.example.vqi.Dashboard"}


def site(**changes) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    return data


def test_example_site_gives_every_component_and_stream_manager():
    doc = deployment_document(load_site(EXAMPLE))
    assert set(doc["components"]) == NAMES | {"aws.greengrass.StreamManager"}
    assert doc["targetArn"].endswith("thinggroup/plant-a-line-3")
    assert all(c["componentVersion"] for c in doc["components"].values())


def test_configuration_merges_are_json_strings_as_the_api_expects():
    doc = deployment_document(site())
    merge = doc["components"]["com.example.vqi.ImageSource"]["configurationUpdate"]["merge"]
    assert isinstance(merge, str)
    assert json.loads(merge) == site()["configuration"]["com.example.vqi.ImageSource"]


def test_a_misspelt_configuration_key_is_refused_with_the_known_keys():
    bad = site(configuration={"com.example.vqi.Inference": {"ResultTopik": "x"}})
    with pytest.raises(SiteError, match="unknown configuration keys.*ResultTopik"):
        deployment_document(bad)


def test_an_unknown_component_is_refused():
    with pytest.raises(SiteError, match="unknown component"):
        deployment_document(site(configuration={"com.example.Nope": {}}))


def test_a_missing_version_is_refused_with_a_hint():
    versions = dict(site()["versions"])
    del versions["com.example.vqi.Uploader"]
    with pytest.raises(SiteError, match="no version for com.example.vqi.Uploader"):
        deployment_document(site(versions=versions))


def test_command_line_versions_override_the_site_file():
    doc = deployment_document(site(), {"com.example.vqi.Inference": "1.2.3"})
    assert doc["components"]["com.example.vqi.Inference"]["componentVersion"] == "1.2.3"


@pytest.mark.parametrize("arn", ["", "line-3", "arn:aws:iot:eu-west-1:12:thing/x"])
def test_target_must_be_a_thing_or_thing_group_arn(arn):
    with pytest.raises(SiteError, match="targetArn"):
        deployment_document(site(targetArn=arn))


def test_the_same_site_settings_drive_the_local_runtime():
    overrides = local_overrides(site())
    assert overrides["com.example.vqi.Inference"] == {
        "reset": [""], "merge": site()["configuration"]["com.example.vqi.Inference"]}


def test_every_product_component_is_reset_before_its_merge_so_the_site_file_is_declarative():
    doc = deployment_document(site(configuration={"com.example.vqi.Inference": {
        "ResultTopic": "vqi/results"}}))
    for name in NAMES:
        assert doc["components"][name]["configurationUpdate"]["reset"] == [""]
    assert "merge" not in doc["components"]["com.example.vqi.Uploader"]["configurationUpdate"]


def test_built_in_components_get_only_a_merge_of_the_keys_the_site_names():
    doc = deployment_document(site(nucleusVersion="2.14.0", configuration={
        "aws.greengrass.Nucleus": {"interpolateComponentConfiguration": True},
        "aws.greengrass.StreamManager": {"STREAM_MANAGER_SERVER_PORT": "8089"}}))
    nucleus = doc["components"]["aws.greengrass.Nucleus"]
    assert nucleus["componentVersion"] == "2.14.0"
    assert nucleus["configurationUpdate"] == {
        "merge": json.dumps({"interpolateComponentConfiguration": True})}
    sm = doc["components"]["aws.greengrass.StreamManager"]["configurationUpdate"]
    assert sm == {"merge": json.dumps({"STREAM_MANAGER_SERVER_PORT": "8089"})}


def test_nucleus_configuration_needs_the_nucleus_version():
    with pytest.raises(SiteError, match="nucleusVersion"):
        deployment_document(site(configuration={
            "aws.greengrass.Nucleus": {"interpolateComponentConfiguration": True}}))


def test_an_unknown_stream_manager_key_is_refused():
    with pytest.raises(SiteError, match="unknown configuration keys.*STREAM_MANAGER_PORT"):
        deployment_document(site(configuration={
            "aws.greengrass.StreamManager": {"STREAM_MANAGER_PORT": "1"}}))


def test_the_cli_writes_the_document(tmp_path):
    out = tmp_path / "deployment.json"
    subprocess.run([str(REPO / "scripts/make-deployment"), str(EXAMPLE), "-o", str(out)],
                   check=True, capture_output=True)
    assert set(json.loads(out.read_text())["components"]) >= NAMES


def test_a_target_in_another_region_than_the_published_components_is_refused():
    with pytest.raises(SiteError, match=r"targetArn is in eu-west-1, but the components are "
                                        r"published to us-east-1.*--region us-east-1"):
        deployment_document(site(targetArn="arn:aws:iot:eu-west-1:123456789012:thinggroup/x"))


@pytest.mark.parametrize("policy", ["rollback", "ROLL_BACK", "NONE"])
def test_a_failure_policy_the_api_refuses_is_refused_with_the_allowed_values(policy):
    with pytest.raises(SiteError, match=r"failureHandlingPolicy: .* allowed: ROLLBACK, "
                                        r"DO_NOTHING"):
        deployment_document(site(failureHandlingPolicy=policy))


@pytest.mark.parametrize(("component", "key", "value", "words"), [
    ("com.example.vqi.ImageSource", "CameraId", True, "CameraId=True: expected a string"),
    ("com.example.vqi.Uploader", "KinesisBatchIntervalMillis", 5,
     "KinesisBatchIntervalMillis=5: 0 (export at once) or >= 60000"),
    ("com.example.vqi.Inference", "ConfidenceThreshold", 1.5, "ConfidenceThreshold=1.5"),
    ("com.example.vqi.Inference", "ClassConfidenceThresholds", {"dent": 0.5}, "dent"),
])
def test_a_value_the_components_own_loader_rejects_is_refused(component, key, value, words):
    with pytest.raises(SiteError, match=f"configuration of {component}: .*{re.escape(words)}"):
        deployment_document(site(configuration={component: {key: value}}))


def test_yaml_on_for_a_string_key_is_caught_from_the_site_file(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(EXAMPLE.read_text().replace("    ImageTopic: vqi/images",
                                                "    ImageTopic: vqi/images\n    CameraId: on"))
    done = subprocess.run([str(REPO / "scripts/make-deployment"), str(path), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "CameraId=True: expected a string" in done.stderr


def test_check_validates_without_writing(tmp_path):
    done = subprocess.run([str(REPO / "scripts/make-deployment"), str(EXAMPLE), "--check"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and "is a valid deployment of 6 components" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_example_site_is_valid_createdeployment_input_for_botocore():
    """botocore's own ParamValidator on the greengrassv2 CreateDeployment input shape."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("greengrassv2")
    shape = model.operation_model("CreateDeployment").input_shape
    report = ParamValidator().validate(deployment_document(load_site(EXAMPLE)), shape)
    assert not report.has_errors(), report.generate_report()
