"""Stream Manager streams the uploader owns, created or updated at start from configuration.

- results stream: every result as compact JSON, exported to Kinesis Data Streams (or, with the
  export disabled, kept locally as a rolling history);
- export task stream: one S3ExportTaskDefinition per staged file, run by Stream Manager's S3 task
  executor, which reports each task on
- the status stream, read back by the uploader to delete or retry its staged files.
"""

from __future__ import annotations

import logging
from typing import List

from stream_manager import (
    ExportDefinition,
    KinesisConfig,
    MessageStreamDefinition,
    Persistence,
    S3ExportTaskExecutorConfig,
    StatusConfig,
    StatusLevel,
    StrategyOnFull,
    StreamManagerClient,
)
from stream_manager.exceptions import StreamManagerException

from .settings import UploaderConfig

log = logging.getLogger(__name__)

KINESIS_EXPORT_ID = "vqi-results-kinesis"
S3_EXPORT_ID = "vqi-review-s3"


def _common(cfg: UploaderConfig, name: str, max_size: int) -> dict:
    return {
        "name": name,
        "max_size": max_size,
        "stream_segment_size": min(cfg.segment_bytes, max_size),
        "strategy_on_full": StrategyOnFull[cfg.strategy_on_full],
        "persistence": Persistence[cfg.persistence],
        "flush_on_write": cfg.flush_on_write,
    }


def results_stream(cfg: UploaderConfig) -> MessageStreamDefinition:
    common = _common(cfg, cfg.results_stream, cfg.results_max_bytes)
    if not cfg.kinesis_enabled:
        # Nothing drains the stream, so it can only be a rolling local history.
        common["strategy_on_full"] = StrategyOnFull.OverwriteOldestData
        return MessageStreamDefinition(**common)
    kinesis = KinesisConfig(
        identifier=KINESIS_EXPORT_ID,
        kinesis_stream_name=cfg.kinesis_stream,
        batch_size=cfg.kinesis_batch_size or None,
        batch_interval_millis=cfg.kinesis_batch_interval_ms or None,
    )
    return MessageStreamDefinition(**common, export_definition=ExportDefinition(kinesis=[kinesis]))


def status_stream(cfg: UploaderConfig) -> MessageStreamDefinition:
    return MessageStreamDefinition(**_common(cfg, cfg.status_stream, cfg.status_max_bytes))


def export_stream(cfg: UploaderConfig) -> MessageStreamDefinition:
    executor = S3ExportTaskExecutorConfig(
        identifier=S3_EXPORT_ID,
        status_config=StatusConfig(
            status_level=StatusLevel.INFO, status_stream_name=cfg.status_stream
        ),
    )
    return MessageStreamDefinition(
        **_common(cfg, cfg.export_stream, cfg.export_max_bytes),
        export_definition=ExportDefinition(s3_task_executor=[executor]),
    )


def definitions(cfg: UploaderConfig) -> List[MessageStreamDefinition]:
    """In creation order: the status stream must exist before the stream that reports to it."""
    return [results_stream(cfg), status_stream(cfg), export_stream(cfg)]


def ensure_streams(client: StreamManagerClient, cfg: UploaderConfig) -> List[str]:
    """Create each stream, or update it in place so a configuration change takes effect.

    Returns the names of the streams created (a new stream numbers its messages from 0 again).
    """
    existing = set(client.list_streams())
    created = []
    for definition in definitions(cfg):
        if definition.name not in existing:
            client.create_message_stream(definition)
            log.info("created stream %s", definition.name)
            created.append(definition.name)
            continue
        try:
            client.update_message_stream(definition)
        except StreamManagerException as exc:  # e.g. persistence cannot change in place
            log.warning("stream %s kept its previous definition: %s", definition.name, exc)
    return created
