"""The contract's error answers: which failure answers which status, and the one JSON
shape every error answer has, `{"ok": false, "error": {"type", "message"}, "trace_id"}`.

A failure's `type` is its class name, as in `classify --json` (`UnidentifiedImageError`,
`DecompressionBomb`, …); the request errors below are named for what went wrong.
"""

from __future__ import annotations

from typing import Any, ClassVar

from PIL import UnidentifiedImageError

from pipeline.batcher import BatcherStopped
from pipeline.batcher import QueueFull as BatchQueueFull
from pipeline.imaging import ImageRejected
from wwts.render import error_json
from wwts.serve.config import RETRY_AFTER_S

OK = 200
UNPROCESSABLE = 422  # the body is no image we may decode (a bomb included)
UNAVAILABLE = 503
INTERNAL = 500  # the runtime failed: not the input's fault, and rare


class HttpError(Exception):
    """A request refused before its image was decoded. `path` is what its record and
    answer call the input (the upload's name when known)."""

    status: ClassVar[int] = 400
    close: ClassVar[bool] = False  # answer with `Connection: close`

    def __init__(self, message: str, path: str = "-") -> None:
        super().__init__(message)
        self.path = path


class BadRequest(HttpError):
    status = 400


class EmptyBody(BadRequest):
    """No bytes, or an empty uploaded file."""


class MissingFile(BadRequest):
    """A multipart body without a `file` upload."""


class MalformedBody(BadRequest):
    """A multipart body that cannot be parsed, or a client that left mid-body."""


class InvalidTopK(BadRequest):
    """`top_k` is not an integer from 1 to MAX_TOP_K."""


class Unauthorized(HttpError):
    status = 401


class MissingToken(Unauthorized):
    pass


class InvalidToken(Unauthorized):
    pass


class RequestTimeout(HttpError):
    """The body did not arrive within the request timeout."""

    status = 408
    close = True


class BodyTooLarge(HttpError):
    status = 413
    close = True  # the rest of the body is not read


class Unavailable(HttpError):
    status = UNAVAILABLE


class QueueFull(Unavailable):
    """As many requests as `--max-queue` allows are in progress already."""


class ServerStopping(Unavailable):
    close = True


class NotReady(Unavailable):
    """The model is still loading (or failed to load)."""


class QueueTimeout(Unavailable):
    """No forward pass took the request within the request timeout."""


class NotFound(HttpError):
    status = 404


class MethodNotAllowed(HttpError):
    status = 405


class InternalError(HttpError):
    status = INTERNAL


INPUT_ERRORS = (ImageRejected, UnidentifiedImageError, ValueError)  # ImageRejected is a ValueError too
OVERLOAD_ERRORS = (BatchQueueFull, BatcherStopped, MemoryError)


def status_of(error: BaseException | None) -> int:
    """The status that answers a request whose input ended with `error` (None: 200)."""
    if error is None:
        return OK
    if isinstance(error, HttpError):
        return error.status
    if isinstance(error, OVERLOAD_ERRORS):
        return UNAVAILABLE
    if isinstance(error, INPUT_ERRORS):
        return UNPROCESSABLE
    return INTERNAL


def headers_of(error: BaseException | None) -> dict[str, str]:
    """The headers an error answer carries: Retry-After on a 503, Connection: close where
    the connection should not be reused, the bearer challenge on a 401."""
    headers: dict[str, str] = {}
    if error is None:
        return headers
    if status_of(error) == UNAVAILABLE:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if isinstance(error, HttpError) and error.close:
        headers["Connection"] = "close"
    if isinstance(error, Unauthorized):
        challenge = 'Bearer realm="wwts"'
        headers["WWW-Authenticate"] = challenge + (', error="invalid_token"' if isinstance(error, InvalidToken) else "")
    return headers


def error_body(error: BaseException, trace_id: str | None) -> dict[str, Any]:
    return {"ok": False, "error": error_json(error), "trace_id": trace_id}
