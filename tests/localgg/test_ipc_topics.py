"""MQTT filter matching for delivery, and Greengrass resource matching for authorization."""

from __future__ import annotations

import pytest

from localgg.authz import Authorizer, PolicyError
from localgg.topics import (
    MQTT_STYLE,
    STANDARD,
    TopicError,
    resource_matches,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)


@pytest.mark.parametrize("topic_filter, topic, expected", [
    ("vqi/results", "vqi/results", True),
    ("vqi/results", "vqi/results/x", False),
    ("vqi/+", "vqi/results", True),
    ("vqi/+", "vqi/a/b", False),
    ("vqi/+/results", "vqi/thing-1/results", True),
    ("vqi/+/results", "vqi//results", True),
    ("+/+", "a/b", True),
    ("+", "a/b", False),
    ("vqi/#", "vqi", True),
    ("vqi/#", "vqi/a/b/c", True),
    ("vqi/#", "vqix/a", False),
    ("#", "anything/at/all", True),
    ("#", "$aws/things/x", False),
    ("+/things/x", "$aws/things/x", False),
    ("$aws/things/+", "$aws/things/x", True),
])
def test_topic_filters_match_as_mqtt_does(topic_filter, topic, expected):
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b#", "a+/b", "a/+b"])
def test_malformed_topic_filters_are_refused(bad):
    with pytest.raises(TopicError):
        validate_topic_filter(bad)


@pytest.mark.parametrize("bad", ["", "a/+", "a/#", None])
def test_publish_topics_must_not_contain_wildcards(bad):
    with pytest.raises(TopicError):
        validate_topic_name(bad)


@pytest.mark.parametrize("pattern, resource, expected", [
    ("vqi/images", "vqi/images", True),
    ("vqi/images", "vqi/images2", False),
    ("*", "any/topic/#", True),
    ("vqi/*", "vqi/a/b", True),             # '*' crosses levels, unlike '+'
    ("vqi/*/results", "vqi/t1/results", True),
    ("vqi/*/results", "vqi/t1/results/x", False),
    ("vqi/+/results", "vqi/t1/results", True),
    ("vqi/+/results", "vqi/a/b/results", False),
    ("vqi/+/results", "vqi/+/results", True),   # subscribing with the filter itself
    ("vqi/#", "vqi", True),
    ("vqi/#", "vqi/+/results", True),
    ("vqi/#", "vqix", False),
    ("vqi/images", "vqi/#", False),          # a filter needs a resource that covers it
    ("a+b", "a+b", True),                    # '+' inside a level is a plain character
    ("a+b", "axb", False),
    ("a${*}", "a*", True),                   # escaped '*'
    ("a${*}", "ab", False),
])
def test_iot_core_resources_match_mqtt_style_as_the_nucleus_does(pattern, resource, expected):
    assert resource_matches(pattern, resource, MQTT_STYLE) is expected


@pytest.mark.parametrize("pattern,resource,expected", [
    ("vqi/*", "vqi/a/b", True),              # '*' crosses levels
    ("*", "anything/at/all", True),
    ("vqi/+/results", "vqi/t1/results", False),  # '+' is a plain character locally
    ("vqi/+/results", "vqi/+/results", True),    # ... so it matches only itself
    ("vqi/#", "vqi/images", False),          # '#' too
    ("vqi/#", "vqi", False),
    ("vqi/#", "vqi/#", True),
    ("a${*}", "a*", True),
])
def test_local_pubsub_resources_match_standard_style(pattern, resource, expected):
    assert resource_matches(pattern, resource, STANDARD) is expected


def test_local_pubsub_policy_with_plus_does_not_match_a_topic():
    authz = Authorizer({PUBSUB: {"p": {"operations": ["aws.greengrass#SubscribeToTopic"],
                                       "resources": ["vqi/+"]}}})
    assert not authz.is_allowed(PUBSUB, "aws.greengrass#SubscribeToTopic", "vqi/images")
    iot = Authorizer({MQTT: {"p": {"operations": ["aws.greengrass#PublishToIoTCore"],
                                   "resources": ["vqi/+"]}}})
    assert iot.is_allowed(MQTT, "aws.greengrass#PublishToIoTCore", "vqi/images")


PUBSUB = "aws.greengrass.ipc.pubsub"
MQTT = "aws.greengrass.ipc.mqttproxy"


def test_operation_is_allowed_only_on_listed_resources():
    authz = Authorizer({PUBSUB: {"p": {"operations": ["aws.greengrass#PublishToTopic"],
                                       "resources": ["vqi/results"]}}})
    assert authz.is_allowed(PUBSUB, "aws.greengrass#PublishToTopic", "vqi/results")
    assert not authz.is_allowed(PUBSUB, "aws.greengrass#PublishToTopic", "vqi/images")
    assert not authz.is_allowed(PUBSUB, "aws.greengrass#SubscribeToTopic", "vqi/results")


def test_policies_of_one_service_do_not_grant_another():
    authz = Authorizer({PUBSUB: {"p": {"operations": ["*"], "resources": ["*"]}}})
    assert authz.is_allowed(PUBSUB, "aws.greengrass#SubscribeToTopic", "x")
    assert not authz.is_allowed(MQTT, "aws.greengrass#PublishToIoTCore", "x")


def test_no_access_control_means_no_access():
    assert not Authorizer(None).is_allowed(PUBSUB, "aws.greengrass#PublishToTopic", "t")


def test_malformed_policy_is_refused_with_its_location():
    with pytest.raises(PolicyError, match="accessControl.aws.greengrass.ipc.pubsub.p.operations"):
        Authorizer({PUBSUB: {"p": {"operations": "", "resources": ["*"]}}})
    with pytest.raises(PolicyError, match="resources"):
        Authorizer({PUBSUB: {"p": {"operations": ["*"], "resources": [1]}}})
