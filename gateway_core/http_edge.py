"""What every HTTP route of the gateway reads first, before the request means anything: the header block's
size, the body up to its limit (never read whole past it), and who the caller says it is."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from gateway_core.rpc import Caller

MAX_HEADER_BYTES = 16 * 1024  # all of a request's headers together; a token is under a hundred bytes
# A body still arriving after this long is refused: a client sending a byte now and then would hold its
# connection, and everything waiting on it (a graceful stop), for as long as it liked. 1 MiB takes
# milliseconds on any link an agent uses.
BODY_READ_SECONDS = 30.0


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


class HeadersTooLarge(Exception):
    pass


def check_header_size(request: Request) -> None:
    if sum(len(name) + len(value) for name, value in request.scope["headers"]) > MAX_HEADER_BYTES:
        raise HeadersTooLarge


def caller_of(request: Request) -> Caller:
    return Caller(
        authorization=request.headers.get("authorization"),
        agent_header=request.headers.get("x-agent-id"),
        remote=request.client.host if request.client else None,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (never read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyTooLarge
    except TimeoutError:
        raise BodyTooSlow from None
    return bytes(body)
