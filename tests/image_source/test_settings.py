"""The recipe's defaults are the code's defaults, and every key is documented."""

from __future__ import annotations

from dataclasses import fields

from vqi_image_source.settings import Settings, parse

from .helpers import COMPONENT_DIR
from .rig import recipe_defaults


def test_recipe_defaults_equal_the_code_defaults() -> None:
    defaults = recipe_defaults()
    defaults.pop("accessControl")
    assert set(defaults) == {f.metadata["key"] for f in fields(Settings)}
    assert parse(defaults) == Settings()


def test_every_configuration_key_is_documented_in_the_readme() -> None:
    readme = (COMPONENT_DIR / "README.md").read_text()
    keys = [f.metadata["key"] for f in fields(Settings)]
    missing = [key for key in keys if f"`{key}`" not in readme]
    assert missing == []


def test_recipe_allows_exactly_the_topics_it_uses() -> None:
    policies = recipe_defaults()["accessControl"]["aws.greengrass.ipc.pubsub"].values()
    allowed = {(op, r) for p in policies for op in p["operations"] for r in p["resources"]}
    assert allowed == {
        ("aws.greengrass#PublishToTopic", "vqi/images"),
        ("aws.greengrass#PublishToTopic", "vqi/metrics"),
        ("aws.greengrass#SubscribeToTopic", "vqi/archived"),
        ("aws.greengrass#SubscribeToTopic", "vqi/results"),
        ("aws.greengrass#SubscribeToTopic", "vqi/ready"),
    }
