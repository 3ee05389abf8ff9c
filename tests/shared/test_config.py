"""shared.config: typed recipe configuration, refused whole with every bad key named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import pytest

from shared.config import ConfigError, load, setting


@dataclass(frozen=True)
class Example:
    rate: float = setting("Rate", 0.5, lambda v: 0 <= v <= 1, "between 0 and 1")
    count: int = setting("Count", 3)
    enabled: bool = setting("Enabled", True)
    name: str = setting("Name", "line")
    tags: List[str] = setting("Tags", ["a"])


def test_absent_and_null_keys_take_their_defaults() -> None:
    assert load(Example, {"Count": None}) == Example()


def test_numbers_and_booleans_given_as_strings_are_accepted() -> None:
    got = load(Example, {"Rate": "0.25", "Count": " 7 ", "Enabled": "FALSE"})
    assert (got.rate, got.count, got.enabled) == (0.25, 7, False)


def test_an_integer_key_refuses_a_fraction_and_a_boolean() -> None:
    for value in (2.5, True):
        with pytest.raises(ConfigError, match="Count"):
            load(Example, {"Count": value})


def test_every_bad_key_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        load(Example, {"Rate": 3, "Enabled": "yes", "Name": 5, "Tags": "a"})
    text = str(err.value)
    for part in ("Rate=3: between 0 and 1", "Enabled='yes'", "Name=5", "Tags='a'"):
        assert part in text


def test_list_defaults_are_not_shared_between_instances() -> None:
    first, second = load(Example, {}), load(Example, {})
    first.tags.append("b")
    assert second.tags == ["a"]


def test_a_secret_value_is_not_repeated_in_the_error():
    @dataclass
    class Secretive:
        token: str = setting("Token", "", secret=True)

    with pytest.raises(ConfigError) as caught:
        load(Secretive, {"Token": 1234567890123456789})
    assert "Token=<redacted>: expected a string" in str(caught.value)
    assert "1234567890123456789" not in str(caught.value)
