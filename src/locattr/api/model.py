"""The model a server may hold (`locattr serve --model RUN`), and what keeps it usable under
load: one compute at a time, a bounded queue, a time limit, a graph cache bounded in bytes.

Importing this module imports no torch: `load_host` imports `locattr.api.model_runtime` (torch,
the compute layer) only when a model is asked for, so a server without one starts as fast as
before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locattr.api.errors import ERROR_RESPONSES, error_response
from locattr.api.schemas import ErrorBody
from locattr.errors import LocattrError

if TYPE_CHECKING:
    from locattr.api.model_runtime import ModelRuntime
    from locattr.api.settings import Settings
    from locattr.graph import Graph

T = TypeVar("T")


class ModelUnavailableError(LocattrError):
    """The server holds no model, so it cannot compute."""


class ComputeBusyError(LocattrError):
    """The queue for the model is full: try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ComputeTimeoutError(LocattrError):
    """A request waited for the model past the server's time limit (a computation once started
    runs to its end: one prompt's is bounded by the context; a search stops between batches)."""


class ClientGoneError(LocattrError):
    """The client disconnected while its work was queued: nobody reads the answer."""


NO_MODEL = (
    "this server holds no model: start the server with --model RUN (or LOCATTR_MODEL), e.g. "
    "`locattr serve --db DB --model demo`"
)


INTERACTIVE_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERROR_RESPONSES,
    400: {"model": ErrorBody, "description": "The body cannot be read (it is not UTF-8 text)."},
    404: {"model": ErrorBody, "description": "No such stored prompt (`prompt_id`) or path."},
    409: {
        "model": ErrorBody,
        "description": "The server holds no model: start it with `--model RUN`.",
    },
    422: {
        "model": ErrorBody,
        "description": "The prompt, a key or a position is malformed or does not fit the model.",
    },
    413: {"model": ErrorBody, "description": "The request body is longer than the server reads."},
    503: {
        "model": ErrorBody,
        "description": "The model is busy (the queue is full: retry after `Retry-After` seconds) "
        "or the time limit passed, or the database is unusable.",
    },
}


def install_model_error_handlers(app: FastAPI) -> None:
    """Statuses of the model's errors (more specific than `LocattrError`'s 422)."""

    @app.exception_handler(ModelUnavailableError)
    async def _no_model(_request: Request, error: Exception) -> JSONResponse:
        return error_response(409, "no_model", str(error))

    @app.exception_handler(ComputeBusyError)
    async def _busy(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ComputeBusyError)
        headers = {"Retry-After": str(error.retry_after_s)}
        return error_response(503, "model_busy", str(error), headers=headers)

    @app.exception_handler(ComputeTimeoutError)
    async def _timeout(_request: Request, error: Exception) -> JSONResponse:
        return error_response(503, "compute_timeout", str(error))

    @app.exception_handler(ClientGoneError)
    async def _gone(_request: Request, error: Exception) -> JSONResponse:
        return error_response(499, "client_disconnected", str(error))


@dataclass
class GraphCache:
    """Recently computed graphs by content (tokens and settings), least recently used dropped
    first, at most `max_bytes` of graph arrays in all. Used from the event loop only."""

    max_bytes: int
    _entries: OrderedDict[Hashable, tuple[Graph, int]] = field(default_factory=OrderedDict)
    size_bytes: int = 0
    hits: int = 0
    misses: int = 0

    def get(self, key: Hashable) -> Graph | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[0]

    def put(self, key: Hashable, graph: Graph) -> None:
        size = graph_bytes(graph)
        if size > self.max_bytes or key in self._entries:
            return
        self._entries[key] = (graph, size)
        self.size_bytes += size
        while self.size_bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.size_bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)


def graph_bytes(graph: Graph) -> int:
    """What a cached graph holds in memory: its arrays, and 1 kB for its key (a prompt's token
    ids, small beside them) and the bookkeeping."""
    arrays = (
        graph.node_layer,
        graph.node_pos,
        graph.node_component,
        graph.node_ci,
        graph.edge_source,
        graph.edge_target,
        graph.edge_value,
    )
    return sum(a.nbytes for a in arrays) + 1024


class ComputeQueue:
    """One computation at a time on the model's device, in a worker thread, first come first
    served; at most `max_waiting` requests wait (more get `ComputeBusyError`, a 503 with
    Retry-After), each until its deadline."""

    def __init__(self, max_waiting: int, timeout_s: float) -> None:
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self.waiting = 0
        self._lock = asyncio.Lock()
        self._recent_s = 0.05  # moving average of one computation's seconds

    def deadline(self) -> float:
        """The monotonic time by which a request arriving now must be answered."""
        return time.monotonic() + self.timeout_s

    def retry_after_s(self) -> int:
        return max(1, math.ceil((self.waiting + 1) * self._recent_s))

    async def run(
        self,
        work: Callable[[], T],
        *,
        deadline: float,
        gone: Callable[[], Awaitable[Any]] | None = None,
        queued: bool = False,
    ) -> T:
        """`work()` in a worker thread once the model is free.

        `gone()` resolves when the client disconnects: queued work is then dropped
        (`ClientGoneError`). `queued`: this request already holds a place (a search's next
        batch), so a full queue does not turn it away.
        """
        if not queued and self.waiting >= self.max_waiting:
            raise ComputeBusyError(
                f"the model is busy: {self.waiting} requests are waiting for it; retry shortly",
                self.retry_after_s(),
            )
        self.waiting += 1
        try:
            await self._acquire(deadline, gone)
        finally:
            self.waiting -= 1
        try:  # a cancelled request still waits for its thread, so computations never overlap
            started = time.monotonic()
            result = await anyio.to_thread.run_sync(work)
            self._recent_s = 0.8 * self._recent_s + 0.2 * (time.monotonic() - started)
            return result
        finally:
            self._lock.release()

    async def _acquire(self, deadline: float, gone: Callable[[], Awaitable[Any]] | None) -> None:
        """Take the lock, or raise when the deadline passes or the client leaves first."""
        acquire = asyncio.ensure_future(self._lock.acquire())
        left = asyncio.ensure_future(gone()) if gone is not None else None
        watched = {acquire} if left is None else {acquire, left}
        try:
            timeout = max(0.0, deadline - time.monotonic())
            await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._abandon(acquire)
            raise
        finally:
            if left is not None:
                left.cancel()
        if acquire.done() and acquire.exception() is None:
            return
        acquire.cancel()  # a cancelled acquire never takes the lock
        if left is not None and left.done() and not left.cancelled():
            raise ClientGoneError("the client disconnected while its request was queued")
        raise ComputeTimeoutError(
            f"the model was busy for longer than the server's time limit "
            f"({self.timeout_s:g} s); retry later"
        )

    def _abandon(self, acquire: asyncio.Future[Any]) -> None:
        if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
            self._lock.release()
        else:
            acquire.cancel()


@dataclass
class ModelHost:
    """The loaded model with its queue and graph cache."""

    runtime: ModelRuntime
    queue: ComputeQueue
    cache: GraphCache
    meta: dict[str, Any] = field(default_factory=dict)
    """The database's meta (its recorded thresholds), read when the server starts."""


def load_host(settings: Settings) -> ModelHost:
    """Load `settings.model` (imports torch) and wrap it for serving."""
    from locattr.api.model_runtime import load_runtime

    return host_for(load_runtime(settings.model, settings.device), settings)


def host_for(runtime: ModelRuntime, settings: Settings) -> ModelHost:
    return ModelHost(
        runtime=runtime,
        queue=ComputeQueue(settings.compute_queue, settings.compute_timeout_s),
        cache=GraphCache(settings.graph_cache_bytes),
    )


def client_gone(request: Request) -> Callable[[], Awaitable[None]]:
    """What resolves when the client disconnects: once a request's body is read, the server's
    next message is the disconnect (or nothing, while the client waits)."""

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return disconnected


class limit_body:  # noqa: N801 (an ASGI middleware, named as a function is)
    """Refuse request bodies over `max_bytes` (413) before more is read into memory: by their
    Content-Length, or, sent in chunks, as soon as they pass it. A body within the bound is
    read here and handed on whole (FastAPI reads it whole anyway)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                first: Message | None = message
                break
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": bytes(body), "more_body": False}
                break

        async def replay() -> Message:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is longer than {self.max_bytes} bytes: send a shorter prompt"
        await error_response(413, "body_too_large", detail)(scope, receive, send)
