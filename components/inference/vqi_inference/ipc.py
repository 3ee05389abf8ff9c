"""IPC client for this component: shared.ipc.IpcClient with a typed publish.

shared.ipc.IpcClient.publish_json (at the time of writing) hands the SDK a plain dict as
publish_message, which GreengrassCoreIPCClientV2 cannot serialise; this subclass builds the SDK's
PublishMessage/JsonMessage shapes. Remove it once shared.ipc does the same.
"""

from __future__ import annotations

from typing import Any

from shared.ipc import IpcClient


class InferenceIpc(IpcClient):
    def publish_json(self, topic: str, message: Any) -> None:
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        self._client.publish_to_topic(
            topic=topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
        )
