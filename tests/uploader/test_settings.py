"""Configuration keys: defaults, checks and the recipe's defaults."""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml

from shared.config import ConfigError
from vqi_uploader.keys import review_keys
from vqi_uploader.settings import UploaderConfig, parse
from vqi_uploader.status import task_payload

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "components", "uploader",
                      "recipe.yaml")
README = os.path.join(os.path.dirname(RECIPE), "README.md")


def keys() -> list:
    return [f.metadata["key"] for f in dataclasses.fields(UploaderConfig)]


def test_defaults_are_safe_without_any_configuration():
    cfg = parse({})
    assert cfg.result_topic == "vqi/results" and cfg.archived_topic == "vqi/archived"
    assert cfg.persistence == "File" and cfg.flush_on_write
    assert not cfg.review_enabled  # no bucket, no review uploads


def test_recipe_defaults_load_and_cover_every_key():
    with open(RECIPE, encoding="utf-8") as fh:
        recipe = yaml.safe_load(fh)
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    parse(defaults)
    assert set(keys()) <= set(defaults)


def test_readme_documents_every_key():
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    missing = [k for k in keys() if f"`{k}`" not in text]
    assert missing == []


@pytest.mark.parametrize("raw, bad", [
    ({"UncertaintyLow": 1.5}, "UncertaintyLow"),
    ({"OkSampleRate": -0.1}, "OkSampleRate"),
    ({"StrategyOnFull": "DropAll"}, "StrategyOnFull"),
    ({"StreamPersistence": "Disk"}, "StreamPersistence"),
    ({"S3Bucket": "Bad_Bucket"}, "S3Bucket"),
    ({"S3Bucket": "10.0.0.1"}, "S3Bucket"),
    ({"KinesisBatchSize": 501}, "KinesisBatchSize"),
    ({"KinesisBatchIntervalMillis": 1000}, "KinesisBatchIntervalMillis"),
    ({"ResultsStreamName": "bad/name"}, "ResultsStreamName"),
    ({"UncertaintyLow": 0.7, "UncertaintyHigh": 0.5}, "UncertaintyLow"),
    ({"ResultsStreamName": "same", "ExportTaskStreamName": "same"}, "stream names"),
    ({"S3KeyPrefix": "line's/review"}, "S3KeyPrefix"),  # the SDK refuses ' in an S3 key
])
def test_bad_values_are_rejected_by_name(raw, bad):
    with pytest.raises(ConfigError, match=bad):
        parse(raw)


def test_console_strings_are_accepted_for_numbers_and_booleans():
    cfg = parse({"OkSampleRate": "0.5", "KinesisExportEnabled": "false",
                       "S3Bucket": "my-review.bucket"})
    assert cfg.ok_sample_rate == 0.5 and not cfg.kinesis_enabled and cfg.review_enabled


def test_recipe_defaults_are_the_code_defaults():
    with open(RECIPE, encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)["ComponentConfiguration"]["DefaultConfiguration"]
    assert parse(defaults) == parse({})


def test_every_accepted_key_prefix_gives_keys_the_sdk_accepts():
    # A prefix the SDK refuses would fail every review result at append time, over and over.
    cfg = parse({"S3KeyPrefix": "a!b*c(d)e=f-g_h.i/j", "S3Bucket": "review-bucket"})
    keys = review_keys(cfg.s3_prefix, "2026-03-07T10:00:00Z", "thing", "DEFECT", "img-1", "x.jpg")
    for key in (keys.image, keys.labels, keys.result):
        task_payload({"url": "file:///staging/x", "bucket": cfg.s3_bucket, "key": key})
