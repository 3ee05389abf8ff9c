"""Recipe variables resolve as the nucleus resolves them; unknown ones stay verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

from localgg.interpolate import (
    ComponentPaths,
    InterpolationContext,
    interpolate,
    interpolate_tree,
)

ROOT = Path("/gg")


def paths(name: str) -> ComponentPaths:
    return ComponentPaths(ROOT / "packages/artifacts" / name / "1.0.0",
                          ROOT / "packages/artifacts-unarchived" / name / "1.0.0",
                          ROOT / "work" / name)


@pytest.fixture
def ctx() -> InterpolationContext:
    return InterpolationContext(
        component="t.App",
        thing_name="line-7",
        root=ROOT,
        paths={n: paths(n) for n in ("t.App", "t.Model", "t.Stranger")},
        configurations={
            "t.App": {"Topic": "vqi/images", "Nested": {"Depth": 3, "a/b": "slash"},
                      "Flag": True, "List": [1, 2]},
            "t.Model": {"File": "model.onnx"},
            "t.Stranger": {"Secret": "no"},
        },
        dependencies={"t.Model"},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{artifacts:path}/x", "/gg/packages/artifacts/t.App/1.0.0/x"),
        ("{artifacts:decompressedPath}/app", "/gg/packages/artifacts-unarchived/t.App/1.0.0/app"),
        ("cd {work:path}", "cd /gg/work/t.App"),
        ("{iot:thingName}", "line-7"),
        ("vqi/{iot:thingName}/results", "vqi/line-7/results"),
        ("{kernel:rootPath}", "/gg"),
        ("{configuration:/Topic}", "vqi/images"),
        ("{configuration:/Nested/Depth}", "3"),
        ("{configuration:/Nested/a~1b}", "slash"),
        ("{configuration:/Flag} {configuration:/List}", "true [1,2]"),
        ("{configuration:/Nested}", '{"Depth":3,"a/b":"slash"}'),
        ("{t.Model:artifacts:path}/{t.Model:configuration:/File}",
         "/gg/packages/artifacts/t.Model/1.0.0/model.onnx"),
        ("{t.Model:artifacts:decompressedPath}", "/gg/packages/artifacts-unarchived/t.Model/1.0.0"),
        ("{t.App:work:path}", "/gg/work/t.App"),
    ],
)
def test_known_variables(ctx, text, expected) -> None:
    assert interpolate(text, ctx) == expected


@pytest.mark.parametrize(
    "text",
    [
        "{configuration:/Missing}",
        "{artifacts:nope}",
        "{iot:thingArn}",
        "{t.Stranger:artifacts:path}",  # not a declared dependency
        "{t.Stranger:configuration:/Secret}",
        "{t.Unknown:artifacts:path}",
        "{unknownns:key}",
        "${HOME} {} {x}",
        "awk '{print $1}'",
    ],
)
def test_unknown_variables_are_left_verbatim(ctx, text) -> None:
    assert interpolate(text, ctx) == text


def test_configuration_trees_interpolate_like_lifecycle_text(ctx) -> None:
    access = {"aws.greengrass.ipc.mqttproxy": {"t.App:mqtt:1": {
        "operations": ["aws.greengrass#PublishToIoTCore"],
        "resources": ["vqi/{iot:thingName}/results", "vqi/{iot:thingName}/#"]}}}
    resolved = interpolate_tree(access, ctx)
    assert resolved["aws.greengrass.ipc.mqttproxy"]["t.App:mqtt:1"]["resources"] == [
        "vqi/line-7/results", "vqi/line-7/#"]
    assert interpolate_tree(None, ctx) is None
