"""The gateway's HTTP client to its upstreams, on aiohttp.

Why aiohttp and not httpx (which the SDK's exporter uses): on the gateway's hot path the client
is most of the CPU a request costs. Measured against the same fake upstream on this project's
2-core machines, an httpx ``AsyncClient`` took 0.52 ms of CPU per request at concurrency 1 and
0.98 ms at 32 (its pool checks every idle connection on each request, encode/httpcore#924);
aiohttp took 0.13 ms and 0.07 ms (docs/benchmarks.md).

The proxy sees only this module: `UpstreamClient.send` answers an `UpstreamReply` whose body it
reads whole or chunk by chunk, and every failure to get an answer is an `UpstreamFailure` carrying
its `ErrorInfo` (timeout, connection refused, a stream cut short).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp

from aivitals.errors import ErrorInfo, classify_error

RequestHook = Callable[[str, str, Mapping[str, str]], None]
"""Called with (method, url, headers) as each request leaves: for tests and debugging."""


class UpstreamFailure(Exception):
    """No (complete) answer from the upstream; ``info`` says why, as a call records it."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def _failure(exc: BaseException, timeout_s: float) -> UpstreamFailure:
    info = classify_error(exc)
    if info.error_type == "timeout":
        info = ErrorInfo("timeout", None, f"no answer within {timeout_s:g} s")
    return UpstreamFailure(info)


class UpstreamReply:
    """An upstream's answer, its body not yet read. Close it (``close``) when done."""

    __slots__ = ("_response", "_timeout_s")

    def __init__(self, response: aiohttp.ClientResponse, timeout_s: float) -> None:
        self._response = response
        self._timeout_s = timeout_s

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def content_type(self) -> str | None:
        return self._response.headers.get("content-type")

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header of the answer, in order, repeats kept."""
        return list(self._response.headers.items())

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failure(exc, self._timeout_s) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in whatever pieces the network gives."""
        try:
            async for data in self._response.content.iter_any():
                yield data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failure(exc, self._timeout_s) from exc

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read, else closed (which
        is how a stream the client walked away from is cancelled upstream)."""
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class UpstreamClient:
    """Keep-alive connections to the upstreams, made on the serving loop by `start`."""

    def __init__(
        self, *, max_connections: int = 512, on_request: RequestHook | None = None
    ) -> None:
        self.max_connections = max_connections
        self.on_request = on_request
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                # The proxy sets what goes upstream; aiohttp adds no User-Agent of its own.
                skip_auto_headers=("User-Agent",),
                # Set per request from the upstream's timeout.
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
    ) -> UpstreamReply:
        """Send and wait for the status line and headers; the body is read from the reply.

        ``timeout_s`` bounds connecting and each wait for data, not a whole stream.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        if self.on_request is not None:
            self.on_request(method, url, headers)
        try:
            response = await self._session.request(
                method,
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout_s, sock_read=timeout_s
                ),
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failure(exc, timeout_s) from exc
        return UpstreamReply(response, timeout_s)
