"""S3 key layout."""

from __future__ import annotations

import re

from vqi_uploader.keys import feedback_keys, review_keys, safe_part

# Stream Manager's own key check (S3ExportTaskDefinition), minus its placeholder syntax.
SDK_KEY = re.compile(r"^[^\\{ }%`\[\]\"'><~#^?|]+$")


def test_layout_is_prefix_date_thing_verdict_id_with_sidecars_beside_it():
    keys = review_keys("vqi/review", "2026-03-07T23:59:59.120Z", "line-1", "DEFECT", "cam-42",
                       "/inbox/cam-42.JPG")
    assert keys.image == "vqi/review/2026/03/07/line-1/defect/cam-42.jpg"
    assert keys.labels == "vqi/review/2026/03/07/line-1/defect/cam-42.txt"
    assert keys.result == "vqi/review/2026/03/07/line-1/defect/cam-42.json"


def test_date_is_the_results_utc_day():
    keys = review_keys("p", "2026-03-07T23:30:00+00:00", "t", "OK", "i", "/a.png")
    assert keys.image == "p/2026/03/07/t/ok/i.png"
    shifted = review_keys("p", "2026-03-08T01:30:00+02:00", "t", "OK", "i", "/a.png")
    assert shifted.image == "p/2026/03/07/t/ok/i.png"


def test_empty_prefix_and_missing_extension():
    keys = review_keys("", "2026-01-02T00:00:00Z", "t", "OK", "i", "/noext")
    assert keys.image == "2026/01/02/t/ok/i.bin"


def test_unsafe_characters_are_replaced_so_the_sdk_accepts_the_key():
    keys = review_keys("p", "2026-01-02T00:00:00Z", "my thing#1", "OK", "a b?{c}/../d", "/x.jpg")
    assert keys.image == "p/2026/01/02/my_thing_1/ok/a_b__c__.._d.jpg"
    assert SDK_KEY.match(keys.image)
    assert safe_part("..") == "unknown"


def test_feedback_keys_are_per_image_so_the_last_judgement_wins():
    keys = feedback_keys("p/", "2026-03-07T10:00:00Z", "t", "img 1", ".JPEG")
    assert keys == {"image": "p/feedback/2026/03/07/t/img_1.jpeg",
                    "prelabel": "p/feedback/2026/03/07/t/img_1.prelabel.txt",
                    "label": "p/feedback/2026/03/07/t/img_1.label.txt",
                    "json": "p/feedback/2026/03/07/t/img_1.json"}
    assert all(SDK_KEY.match(k) for k in keys.values())
