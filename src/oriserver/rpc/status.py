"""The one place where the project's errors become gRPC status codes."""

from __future__ import annotations

import grpc

from oriserver.domain.arithmetic import CalculationError
from oriserver.domain.events import FailureCode
from oriserver.errors import RecordingUnavailable, StoreError
from oriserver.service.calculations import failure_code

_FAILURE_CODES: dict[FailureCode, grpc.StatusCode] = {
    FailureCode.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    FailureCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
}


def status_for(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller sees for a project error."""
    if isinstance(error, CalculationError):
        return _FAILURE_CODES[failure_code(error)], str(error)
    if isinstance(error, RecordingUnavailable):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    if isinstance(error, StoreError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    return grpc.StatusCode.INTERNAL, "internal error"
