"""Stream definitions from configuration, created and updated on the local Stream Manager."""

from __future__ import annotations

from pathlib import Path

import pytest
from stream_manager import Persistence, StatusLevel, StrategyOnFull, StreamManagerClient

from localgg.stream_manager import StreamManagerServer
from vqi_uploader.settings import parse
from vqi_uploader.streams import (
    KINESIS_EXPORT_ID,
    S3_EXPORT_ID,
    definitions,
    ensure_streams,
    export_stream,
    results_stream,
)


def test_results_stream_exports_to_the_configured_kinesis_stream():
    cfg = parse({"KinesisStreamName": "line-7", "KinesisBatchSize": 50,
                       "StrategyOnFull": "RejectNewData", "StreamPersistence": "Memory",
                       "FlushOnWrite": False, "ResultsStreamMaxBytes": 4096})
    definition = results_stream(cfg)
    (kinesis,) = definition.export_definition.kinesis
    assert kinesis.identifier == KINESIS_EXPORT_ID and kinesis.kinesis_stream_name == "line-7"
    assert kinesis.batch_size == 50 and kinesis.batch_interval_millis is None
    assert definition.strategy_on_full == StrategyOnFull.RejectNewData
    assert definition.persistence == Persistence.Memory and definition.flush_on_write is False
    assert definition.max_size == 4096 and definition.stream_segment_size == 4096


def test_disabled_kinesis_export_leaves_a_rolling_local_history():
    definition = results_stream(parse({"KinesisExportEnabled": False,
                                             "StrategyOnFull": "RejectNewData"}))
    assert definition.export_definition is None
    assert definition.strategy_on_full == StrategyOnFull.OverwriteOldestData


def test_export_task_stream_reports_to_the_status_stream():
    cfg = parse({"ExportStatusStreamName": "st"})
    (executor,) = export_stream(cfg).export_definition.s3_task_executor
    assert executor.identifier == S3_EXPORT_ID
    assert executor.status_config.status_stream_name == "st"
    assert executor.status_config.status_level == StatusLevel.INFO
    assert [d.name for d in definitions(cfg)] == ["vqi-results", "st", "vqi-review-export-tasks"]


@pytest.mark.timeout(60)
def test_streams_are_created_then_updated_in_place(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    with StreamManagerServer(tmp_path / "sm") as server:
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", server.auth_token)
        client = StreamManagerClient(port=server.port)
        try:
            ensure_streams(client, parse({}))
            assert sorted(client.list_streams()) == sorted(
                ["vqi-results", "vqi-review-export-tasks", "vqi-review-export-status"])
            ensure_streams(client, parse({"ResultsStreamMaxBytes": 1048576}))
            info = client.describe_message_stream("vqi-results")
            assert info.definition.max_size == 1048576
        finally:
            client.close()
