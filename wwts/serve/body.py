"""One classify request's inputs, read within its limits: the bearer token, `top_k`, and
the image — the raw body, or the `file` field of a multipart form.

The body is counted while it arrives: a declared `Content-Length` over the limit is
refused before a byte is read, a stream that grows past it as soon as it does, so no
more than the limit is ever held. Multipart parsing is Starlette's (python-multipart).

Refusing a body the client is still sending: the connection closes after the 413, and a
socket closed with unread bytes in its buffer makes the kernel send a reset, which can
destroy the answer before the client reads it. So what is still arriving is read and
dropped first (bounded in time and bytes), as servers do with a lingering close.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from pipeline.results import Upload
from wwts.serve.config import DISCARD_MAX_S, DISCARD_QUIET_S, MAX_TOP_K
from wwts.serve.errors import BodyTooLarge, EmptyBody, InvalidToken, InvalidTopK, MalformedBody, MissingFile, MissingToken

FILE_FIELD = "file"
MULTIPART = "multipart/form-data"
MAX_FORM_FIELDS = 16  # a form with the file and a few small fields, not a bulk upload


def check_token(authorization: str | None, token: str) -> None:
    """`Authorization: Bearer <token>`, compared in constant time (the token is never
    part of a message)."""
    if not authorization:
        raise MissingToken("this server requires `Authorization: Bearer <token>` (WWTS_API_TOKEN)")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise InvalidToken("the bearer token is not valid")


def parse_top_k(values: list[str], default: int) -> int:
    """`top_k` from the query string (`values`: every value given for it)."""
    if not values:
        return default
    if len(values) > 1:
        raise InvalidTopK("top_k is given more than once")
    raw = values[0].strip()
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP_K:
        raise InvalidTopK(f"top_k must be an integer from 1 to {MAX_TOP_K}, not {raw[:20]!r}")
    return int(raw)


async def read_upload(request: Request, limit: int) -> Upload:
    """The image of a classify request, at most `limit` bytes of body read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        if request.headers.get("expect", "").lower() != "100-continue":  # it is on its way regardless
            await _discard_rest(request, limit)  # (receiving would ask a waiting client to send)
        raise BodyTooLarge(_too_large(limit))
    chunks = _limited(request, limit)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == MULTIPART:
        return await _from_form(request.headers, chunks)
    data = bytearray()
    async for chunk in chunks:
        data += chunk
    if not data:
        raise EmptyBody("the body is empty: send the image bytes, or multipart/form-data with a `file` field")
    return Upload("-", bytes(data))


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                await _discard_rest(request, limit)
                raise BodyTooLarge(_too_large(limit))
            yield chunk
    except ClientDisconnect:
        raise MalformedBody("the client closed the connection before the body was complete") from None


async def _discard_rest(request: Request, limit: int) -> None:
    """Read and drop what the client is still sending, until it pauses for
    DISCARD_QUIET_S, ends the body, or DISCARD_MAX_S or `limit` more bytes have passed."""
    deadline = time.monotonic() + DISCARD_MAX_S
    discarded = 0
    while discarded <= limit and (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(request.receive(), min(DISCARD_QUIET_S, left))
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        discarded += len(message.get("body", b""))


async def _from_form(headers: Headers, chunks: AsyncIterator[bytes]) -> Upload:
    parser = MultiPartParser(headers, chunks, max_files=1, max_fields=MAX_FORM_FIELDS)  # type: ignore[arg-type]
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise MalformedBody(f"the multipart body cannot be read: {exc}") from None
    try:
        upload = form.get(FILE_FIELD)
        if not isinstance(upload, UploadFile):
            found = "a text field" if upload is not None else "no such field"
            raise MissingFile(f"multipart/form-data needs a `{FILE_FIELD}` file upload ({FILE_FIELD}: {found})")
        name = upload.filename or "-"
        data = await upload.read()
        if not data:
            raise EmptyBody(f"the uploaded file {name!r} is empty", path=name)
        return Upload(name, data)
    finally:
        await form.close()


def _too_large(limit: int) -> str:
    return f"the body is larger than {limit / 2**20:g} MiB (--max-body-mb)"
