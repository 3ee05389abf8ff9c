"""What the device and the build need in AWS, derived from the repo, checked against the template.

`device_needs()` reads the recipes and the Uploader's defaults: every artifact is an `s3://` URI
in GDK's bucket (the nucleus's S3Downloader calls GetBucketLocation, then GetObject); the
Uploader exports results to Kinesis with PutRecords and review images to S3 below its key prefix
(Stream Manager's S3 export: PutObject, multipart abort and list parts); Inference publishes to
IoT Core under `vqi/<thing>/...` (its recipe's mqttproxy resources). `problems(template)` says
where `scripts/cloud/vqi-cloud.yaml` grants less than that, or more: a wildcard action, a `*`
resource where an ARN is known, an action nobody needs.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import yaml

from vqitools.build import REPO_ROOT, artifact_uris, find_recipe, load_recipe

TEMPLATE = REPO_ROOT / "scripts" / "cloud" / "vqi-cloud.yaml"
COMPONENTS = REPO_ROOT / "components"
THING = "${iot:Connection.Thing.ThingName}"
# Statements that may use "*": the nucleus's Greengrass data-plane calls have no resource-level
# permissions (AWS's own minimal core device policy grants them on "*").
STAR_RESOURCE_OK = {"GreengrassDataPlane"}
BUILD_ACTIONS = {"greengrass:CreateComponentVersion", "greengrass:DescribeComponent",
                 "greengrass:ListComponentVersions", "s3:GetBucketLocation", "s3:PutObject",
                 "s3:AbortMultipartUpload", "logs:CreateLogGroup",
                 "logs:CreateLogStream", "logs:PutLogEvents"}


class _Loader(yaml.SafeLoader):
    """CloudFormation YAML: `!Sub x` becomes {"Fn::Sub": x}, `!Ref x` {"Ref": x}, and so on."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> Dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (SafeLoader)


def _recipes() -> List[Dict[str, Any]]:
    return [load_recipe(find_recipe(folder)) for folder in sorted(COMPONENTS.iterdir())
            if (folder / "gdk-config.json").is_file()]


def _defaults(recipe: Dict[str, Any]) -> Dict[str, Any]:
    return (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}


def device_needs() -> Dict[str, Tuple[str, ...]]:
    """action -> the template resources it must be granted on (as the template writes them)."""
    recipes = _recipes()
    needs: Dict[str, Tuple[str, ...]] = {}
    if any(str(a["URI"]).startswith("s3://") for r in recipes for a in artifact_uris(r)):
        needs["s3:GetObject"] = ("${ComponentBucket.Arn}/*",)
        needs["s3:GetBucketLocation"] = ("ComponentBucket.Arn",)
    uploader = next(_defaults(r) for r in recipes
                    if r["ComponentName"] == "com.example.vqi.Uploader")
    if uploader.get("KinesisStreamName"):
        needs["kinesis:PutRecords"] = ("ResultsStream.Arn",)
    review = ("${ReviewBucket.Arn}/${ReviewPrefix}/*",)
    for action in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"):
        needs[action] = review
    return needs


def iot_publish_topics() -> Set[str]:
    """The IoT Core topics the components publish to, with the thing level as the thing."""
    topics = set()
    for recipe in _recipes():
        acl = (_defaults(recipe).get("accessControl") or {}).get("aws.greengrass.ipc.mqttproxy")
        for policy in (acl or {}).values():
            if "aws.greengrass#PublishToIoTCore" in policy.get("operations", []):
                topics |= {t.replace("+", THING, 1) for t in policy.get("resources", [])}
    return topics


def _statements(policy: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    for statement in policy["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        out.append({**statement,
                    "Action": actions if isinstance(actions, list) else [actions],
                    "Resource": resources if isinstance(resources, list) else [resources]})
    return out


def _text(resource: Any) -> str:
    """A resource as the template writes it: Sub text, GetAtt `X.Arn`, or the literal."""
    if isinstance(resource, dict):
        if "Fn::Sub" in resource:
            return resource["Fn::Sub"]
        if "Fn::GetAtt" in resource:
            return ".".join(resource["Fn::GetAtt"])
        return json.dumps(resource, sort_keys=True)
    return str(resource)


def _wildcards(name: str, statements: List[Dict[str, Any]]) -> List[str]:
    found = []
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        for action in s["Action"]:
            if "*" in action:
                found.append(f"{name}/{s.get('Sid')}: wildcard action {action!r}")
        if "*" in s["Resource"] and s.get("Sid") not in STAR_RESOURCE_OK:
            found.append(f"{name}/{s.get('Sid')}: resource '*' where an ARN is known")
    return found


def problems(template: Dict[str, Any]) -> List[str]:
    """Everything the template grants beyond, or short of, what the repo needs."""
    res = template["Resources"]
    found: List[str] = []
    device = _statements(res["TokenExchangeRole"]["Properties"]["Policies"][0]["PolicyDocument"])
    found += _wildcards("TokenExchangeRole", device)
    needs = device_needs()
    granted: Dict[str, Set[str]] = {}
    for s in device:
        for action in s["Action"]:
            granted.setdefault(action, set()).update(_text(r) for r in s["Resource"])
    for action, resources in needs.items():
        missing = set(resources) - granted.get(action, set())
        if missing:
            found.append(f"TokenExchangeRole: {action} is needed on {sorted(missing)}")
    for action, resources in granted.items():
        extra = resources - set(needs.get(action, ()))
        if extra:
            found.append(f"TokenExchangeRole: {action} on {sorted(extra)} is not needed")
    iot = _statements(res["CoreDevicePolicy"]["Properties"]["PolicyDocument"])
    found += _wildcards("CoreDevicePolicy", iot)
    prefix = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/"
    publish = [_text(r)[len(prefix):] for s in iot if "iot:Publish" in s["Action"]
               for r in s["Resource"] if _text(r).startswith(prefix)]
    bare = [p.replace("${!", "${") for p in publish]
    for topic in sorted(iot_publish_topics()):
        if not any(fnmatch.fnmatchcase(topic, pattern) for pattern in bare):
            found.append(f"CoreDevicePolicy: components publish to {topic}, not allowed")
    for pattern in bare:
        if not (pattern.startswith(f"vqi/{THING}/") or pattern.startswith(f"$aws/things/{THING}/")):
            found.append(f"CoreDevicePolicy: publishing to {pattern} is not limited to the thing")
    build = _statements(res["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"])
    found += _wildcards("BuildRole", build)
    for s in build:
        for action in s["Action"]:
            if action not in BUILD_ACTIONS:
                found.append(f"BuildRole: {action} is not needed to publish components")
            if action.startswith("greengrass:") and not all(
                    "components:${ComponentNamePrefix}*" in _text(r) for r in s["Resource"]):
                found.append(f"BuildRole: {action} is not limited to this product's components")
    return found


def parameter_defaults_match() -> List[str]:
    """The template's defaults are the components' own (a fresh stack needs no overrides)."""
    params = load_template()["Parameters"]
    recipes = {r["ComponentName"]: r for r in _recipes()}
    uploader = _defaults(recipes["com.example.vqi.Uploader"])
    found = []
    if params["ReviewPrefix"]["Default"] != uploader["S3KeyPrefix"]:
        found.append("ReviewPrefix default differs from the Uploader's S3KeyPrefix")
    if params["ResultsStreamName"]["Default"] != uploader["KinesisStreamName"]:
        found.append("ResultsStreamName default differs from the Uploader's KinesisStreamName")
    buckets = {json.loads((COMPONENTS / f / "gdk-config.json").read_text())["component"]
               .popitem()[1]["publish"]["bucket"] for f in
               sorted(p.name for p in COMPONENTS.iterdir() if (p / "gdk-config.json").is_file())}
    if buckets != {params["ComponentBucketPrefix"]["Default"]}:
        found.append(f"ComponentBucketPrefix default is not gdk-config's bucket {sorted(buckets)}")
    return found
