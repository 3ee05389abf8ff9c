"""The cloud template: cfn-lint clean, and exactly the permissions the components and the build
need (derived from the recipes and the Uploader's configuration), nothing broader."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vqitools.cloudpolicy import TEMPLATE, load_template, parameter_defaults_match, problems


def cfn_lint() -> str:
    found = shutil.which("cfn-lint") or str(Path(sys.executable).with_name("cfn-lint"))
    if not Path(found).exists():
        pytest.fail("cfn-lint is not installed (requirements-dev.txt)")
    return found


def test_cfn_lint_passes_on_the_template() -> None:
    done = subprocess.run([cfn_lint(), str(TEMPLATE)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_template_grants_what_the_device_and_the_build_need_and_nothing_broader() -> None:
    assert problems(load_template()) == []


def test_its_defaults_are_the_components_own() -> None:
    assert parameter_defaults_match() == []


def device_statement(template: dict, sid: str) -> dict:
    policy = template["Resources"]["TokenExchangeRole"]["Properties"]["Policies"][0]
    return next(s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == sid)


def test_a_missing_action_is_found() -> None:
    template = copy.deepcopy(load_template())
    device_statement(template, "ReviewImagesToS3")["Action"].remove("s3:AbortMultipartUpload")
    assert any("s3:AbortMultipartUpload is needed" in p for p in problems(template))


def test_a_wildcard_action_is_found() -> None:
    template = copy.deepcopy(load_template())
    device_statement(template, "ResultsToKinesis")["Action"] = "kinesis:*"
    found = problems(template)
    assert any("wildcard action 'kinesis:*'" in p for p in found)
    assert any("kinesis:PutRecords is needed" in p for p in found)


def test_a_star_resource_is_found() -> None:
    template = copy.deepcopy(load_template())
    device_statement(template, "ComponentArtifacts")["Resource"] = "*"
    assert any("resource '*' where an ARN is known" in p for p in problems(template))


def test_publishing_beyond_the_things_own_topics_is_found() -> None:
    template = copy.deepcopy(load_template())
    policy = template["Resources"]["CoreDevicePolicy"]["Properties"]["PolicyDocument"]
    statement = next(s for s in policy["Statement"] if s["Sid"] == "PublishOwnTopics")
    statement["Resource"].append(
        {"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/vqi/#"})
    assert any("not limited to the thing" in p for p in problems(template))
