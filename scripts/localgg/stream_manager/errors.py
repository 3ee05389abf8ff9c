"""Request errors carrying the Stream Manager status code the SDK turns into its own exceptions."""

from __future__ import annotations

from stream_manager.data import ResponseStatusCode


class RequestError(Exception):
    """A request failed; `status` selects the exception class the SDK client raises."""

    status = ResponseStatusCode.UnknownFailure

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RequestError):
    status = ResponseStatusCode.InvalidRequest


class StreamNotFound(RequestError):
    status = ResponseStatusCode.ResourceNotFound


class NotEnoughMessages(RequestError):
    status = ResponseStatusCode.NotEnoughMessages


class StreamFull(InvalidRequest):
    """RejectNewData stream at its maxSize: the SDK raises InvalidRequestException."""


class UpdateNotAllowed(RequestError):
    status = ResponseStatusCode.UpdateNotAllowed


class ResponseTooLarge(RequestError):
    status = ResponseStatusCode.ResponsePayloadTooLarge


class StoreReadError(RequestError):
    status = ResponseStatusCode.MessageStoreReadError
