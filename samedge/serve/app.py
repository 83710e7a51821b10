"""The HTTP/WebSocket application: page, prompt API, result stream, health, metrics.

Endpoints (all JSON unless said otherwise; errors are ``{"error": "..."}``
with a 4xx status that says what was wrong):

=========================== ===============================================================
``GET /``                   the click-to-segment page (HTML, self-contained)
``GET /health``             ``{"status": "ok", ...}``; 503 when the pipeline is not running
                            or its camera dropped out (``"status": "reconnecting"``).
                            Needs the token like every endpoint when one is set (a probe
                            sends ``Authorization: Bearer TOKEN``); reveals no details
                            beyond the pipeline and source state.
``GET /metrics``            Prometheus text format
``GET /api/info``           model, backend, precision, device, source, frame size, limits
``GET /api/objects``        every object (``?masks=1`` adds COCO RLE masks)
``POST /api/objects``       ``{"points": [[x, y]], "labels": [1], "box": [x0, y0, x1, y1]}``
                            -> 201 and the new object (its ``id``)
``DELETE /api/objects``     remove every object
``GET /api/objects/{id}``   one object
``PUT /api/objects/{id}``   replace its prompt (also re-acquires a lost object)
``PATCH /api/objects/{id}`` refine: add points to its earlier clicks (a box replaces its box)
``DELETE /api/objects/{id}`` stop tracking it (204)
``POST /api/everything``    every object in the latest frame (SAM's automatic mask
                            generation; optional JSON body of GeneratorConfig settings,
                            e.g. ``{"points_per_side": 16}``; 409 while one runs;
                            ``?frame=1`` adds the frame as a base64 JPEG)
``WS /ws``                  per-frame results; ``?frames=1`` adds a binary JPEG after each
                            frame's JSON, ``?masks=0`` leaves the masks out; a
                            ``{"type": "status", "source_state": "reconnecting", ...}``
                            message when a live source drops out (and ``"connected"``
                            when it is back)
=========================== ===============================================================

Coordinates are frame pixels, ``(x, y)``; labels 1 (foreground) or 0
(background). The WebSocket also takes the prompt operations as JSON
messages: ``{"op": "add" | "update" | "patch" | "remove" | "clear", "id": ...,
"points": ..., "labels": ..., "box": ..., "request_id": ...}``, answered by
``{"type": "reply", ...}`` or ``{"type": "error", "status": ..., "error": ...}``.

Safety: with a token configured every endpoint, ``/health`` included, needs
``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (browsers cannot set
headers on a WebSocket or a page load), compared in constant time. Request
bodies and WebSocket messages are bounded (``max_body_bytes``); ``Host``
headers are checked when bound to loopback (against DNS rebinding);
requests whose ``Origin`` is not the server itself are refused (against
cross-site requests and WebSocket hijacking; behind a reverse proxy, pass
the original ``Host`` on, e.g. nginx's ``proxy_set_header Host $host``); writes
need ``Content-Type: application/json``.

Example:
    >>> from samedge.serve import ServeConfig, StreamService, create_app
    >>> app = create_app(StreamService(ServeConfig()))   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.resources
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from samedge.errors import InputError, PromptError
from samedge.generator import GeneratorConfig
from samedge.serve.service import ApiError, PromptSpec, StreamService, Subscriber

__all__ = ["create_app", "parse_prompt"]

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[1-9][0-9]{0,8}$")
_PROMPT_KEYS = ("points", "labels", "box")
# A bound on anything echoed back into a message (request ids, op names).
_ECHO_LIMIT = 64


# -- prompt parsing -----------------------------------------------------------------------


def _number(value: Any, where: str) -> float:
    # bool is an int in Python; true/false are not coordinates.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, f"{where}: got {_short(value)}, expected a number")
    out = float(value)
    if not math.isfinite(out):
        raise ApiError(422, f"{where}: got {value}, expected a finite number")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "..."


def parse_prompt(data: Any, *, max_points: int = 32, require: bool = True) -> PromptSpec:
    """Validate a prompt JSON object into a :class:`PromptSpec`.

    Args:
        data: The decoded JSON: ``{"points": [[x, y], ...], "labels": [1, ...],
            "box": [x0, y0, x1, y1]}``; ``labels`` defaults to all 1.
        max_points: Most points accepted.
        require: Whether at least one point or a box must be present.

    Raises:
        ApiError: 422 naming the field, what was received and what was expected.

    Example:
        >>> parse_prompt({"points": [[10, 20]]}).labels
        (1,)
    """
    if not isinstance(data, dict):
        raise ApiError(
            422, f"body: got {type(data).__name__}, expected a JSON object with points/labels/box"
        )
    unknown = sorted(set(data) - set(_PROMPT_KEYS))
    if unknown:
        raise ApiError(
            422,
            f"unknown field {_short(unknown[0])}; expected only {', '.join(_PROMPT_KEYS)}",
        )
    points_raw, labels_raw, box_raw = (data.get(k) for k in _PROMPT_KEYS)
    points: list[tuple[float, float]] = []
    if points_raw is not None:
        if not isinstance(points_raw, list):
            raise ApiError(422, f"points: got {_short(points_raw)}, expected [[x, y], ...]")
        if len(points_raw) > max_points:
            raise ApiError(
                422, f"points: got {len(points_raw)}, the limit is {max_points} per object"
            )
        for i, p in enumerate(points_raw):
            if not isinstance(p, list) or len(p) != 2:
                raise ApiError(422, f"points[{i}]: got {_short(p)}, expected [x, y]")
            points.append((_number(p[0], f"points[{i}][0]"), _number(p[1], f"points[{i}][1]")))
    labels: list[int] = []
    if labels_raw is None:
        labels = [1] * len(points)
    else:
        if not isinstance(labels_raw, list):
            raise ApiError(422, f"labels: got {_short(labels_raw)}, expected [1, 0, ...]")
        if len(labels_raw) != len(points):
            raise ApiError(
                422,
                f"labels: got {len(labels_raw)} labels for {len(points)} points; "
                "expected one label (1 foreground, 0 background) per point",
            )
        for i, v in enumerate(labels_raw):
            if isinstance(v, bool) or v not in (0, 1):
                raise ApiError(
                    422, f"labels[{i}]: got {_short(v)}, expected 1 (foreground) or 0 (background)"
                )
            labels.append(int(v))
    box: tuple[float, float, float, float] | None = None
    if box_raw is not None:
        if not isinstance(box_raw, list) or len(box_raw) != 4:
            raise ApiError(422, f"box: got {_short(box_raw)}, expected [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (_number(v, f"box[{i}]") for i, v in enumerate(box_raw))
        if x1 < x0 or y1 < y0:
            raise ApiError(
                422,
                f"box: got [{x0:g}, {y0:g}, {x1:g}, {y1:g}], expected x0 <= x1 and y0 <= y1 "
                "(top-left corner first)",
            )
        box = (x0, y0, x1, y1)
    if require and not points and box is None:
        raise ApiError(422, "prompt: got no points and no box; expected at least one of them")
    try:
        return PromptSpec(tuple(points), tuple(labels), box)
    except PromptError as e:
        raise ApiError(422, str(e)) from e


def _parse_id(text: str) -> int:
    if not _ID_RE.match(text):
        raise ApiError(422, f"object id: got {_short(text)}, expected a positive integer")
    return int(text)


def _query_flag(params: Any, name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ApiError(422, f"?{name}=: got {_short(value)}, expected 1 or 0")


# -- security middleware ------------------------------------------------------------------


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class _Guard:
    """Host, Origin, token and body-size checks in front of every route (pure ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        host_names: tuple[str, ...] | None,
        max_body: int,
    ) -> None:
        self.app = app
        # Compare digests: equal lengths, so compare_digest leaks nothing, not even the length.
        self.token_digest = _digest(token) if token is not None else None
        self.host_names = {h.lower() for h in host_names} if host_names is not None else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check(scope, headers)
        if problem is not None:
            status, message = problem
            if scope["type"] == "websocket":
                # Closing before accepting answers the handshake with 403; no details.
                await send({"type": "websocket.close", "code": 1008})
                return
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await JSONResponse({"error": message}, status, headers=extra)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.host_names is not None and _host_name(host) not in self.host_names:
            return 421, (
                f"Host header {_short(host)} is not served here (expected one of "
                f"{', '.join(sorted(self.host_names))}); bind with --host to serve other names"
            )
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"cross-origin request from {_short(origin)} refused"
        # No path is exempt, /health included (issue #6: "required on every endpoint"):
        # its answer tells whoever asks that a camera is served here and whether it is
        # up. A liveness probe sends the header like any other client.
        if self.token_digest is not None:
            given = _given_token(scope, headers)
            if given is None or not hmac.compare_digest(_digest(given), self.token_digest):
                return 401, (
                    "missing or wrong token: send 'Authorization: Bearer TOKEN' or add "
                    "?token=TOKEN to the URL"
                )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, f"Content-Length: got {_short(length)}, expected a number of bytes"
            if int(length) > self.max_body:
                return 413, f"body: {length} bytes, the limit is {self.max_body} bytes"
        return None


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _given_token(scope: Scope, headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[-1] if values else None


# -- request helpers ----------------------------------------------------------------------


async def _read_json(request: Request, limit: int) -> Any:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        got = _short(ctype) if ctype else "no Content-Type"
        raise ApiError(415, f"Content-Type: got {got}, expected application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # a chunked body without a Content-Length
            raise ApiError(413, f"body: more than {limit} bytes, the limit is {limit} bytes")
    return _decode_json(bytes(body))


def _decode_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, "body: JSON nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body: not UTF-8 ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"body: not valid JSON ({e.msg} at line {e.lineno})") from None


def _reject_constant(name: str) -> Any:
    raise ApiError(422, f"body: got {name}, expected finite numbers (JSON has no {name})")


# GeneratorConfig's numeric settings a client may send to /api/everything.
_EVERYTHING_FIELDS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "crop_n_points_downscale_factor",
    "min_mask_region_area",
)


def parse_everything(data: Any) -> GeneratorConfig:
    """The generator settings of a ``POST /api/everything`` body (``{}`` for the defaults).

    Raises:
        ApiError: 400 for a body that is not an object, an unknown key, or a
            value the generator refuses (its message names the setting).
    """
    if not isinstance(data, dict):
        raise ApiError(400, f"body: got {type(data).__name__}, expected a JSON object")
    unknown = sorted(set(data) - set(_EVERYTHING_FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"body: unknown keys {', '.join(map(repr, unknown))}; expected any of "
            f"{', '.join(_EVERYTHING_FIELDS)}",
        )
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(400, f"{key}: got {_short(value)}, expected a number")
    try:
        return GeneratorConfig(**data)
    except (InputError, TypeError) as e:
        raise ApiError(400, str(e)) from e


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status)


# -- the application ----------------------------------------------------------------------


def _page() -> str:
    return importlib.resources.files("samedge.serve").joinpath("page.html").read_text("utf-8")


_PAGE_HEADERS = {
    # The page is one static file: inline script and style, frames as blob: URLs.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    # The token may be in the page's URL: never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def create_app(service: StreamService, *, manage: bool = True) -> Starlette:
    """The ASGI application serving ``service``.

    Args:
        service: The pipeline to serve.
        manage: Start the service when the server starts and stop it when it
            stops (the ASGI lifespan); ``False`` when the caller manages it.

    Example:
        >>> import uvicorn                                               # doctest: +SKIP
        >>> uvicorn.run(create_app(StreamService(ServeConfig())))        # doctest: +SKIP
    """
    cfg = service.config
    page = _page()
    limit = cfg.max_body_bytes

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    async def health(request: Request) -> Response:
        data = service.health()
        return _json(data, 200 if data["status"] == "ok" else 503)

    async def metrics(request: Request) -> Response:
        text = service.metrics.render(
            service.info, up=service.running, source=service.source_status()
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def info(request: Request) -> Response:
        size = service.frame_size
        return _json(
            {
                **service.info,
                "backend_reason": service.backend_reason,
                **service.status_json(),
                "synthetic": service.synthetic,
                "frame": {"height": size[0], "width": size[1]} if size else None,
                "limits": {
                    "max_objects": cfg.max_objects,
                    "max_points": cfg.max_points,
                    "max_body_bytes": cfg.max_body_bytes,
                },
            }
        )

    async def objects(request: Request) -> Response:
        if request.method == "GET":
            masks = _query_flag(request.query_params, "masks", False)
            latest = service.latest
            return _json(
                {
                    "frame_id": latest.frame_id if latest is not None else None,
                    "objects": service.objects(masks=masks),
                }
            )
        if request.method == "DELETE":
            return _json({"removed": service.clear()})
        status, data = _apply_op(service, "add", None, await _read_json(request, limit))
        return _json(data, status)

    async def one_object(request: Request) -> Response:
        oid = _parse_id(request.path_params["object_id"])
        if request.method == "GET":
            masks = _query_flag(request.query_params, "masks", False)
            return _json(service.object(oid, masks=masks))
        if request.method == "DELETE":
            service.remove(oid)
            return Response(status_code=204)
        op = "update" if request.method == "PUT" else "patch"
        status, data = _apply_op(service, op, oid, await _read_json(request, limit))
        return _json(data, status)

    async def everything(request: Request) -> Response:
        has_body = request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )
        config = parse_everything(await _read_json(request, limit) if has_body else {})
        # Seconds of CPU: off the event loop, so the stream and other clients go on.
        frame = _query_flag(request.query_params, "frame", False)
        data = await asyncio.to_thread(service.segment_everything, config, frame=frame)
        return _json(data)

    async def api_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            if exc.status == 422:
                service.metrics.prompt_rejected()
            return _json({"error": str(exc)}, exc.status)
        if isinstance(exc, HTTPException):
            detail = exc.detail
            if exc.status_code == 405:
                detail = f"method {request.method} not allowed on {request.url.path}"
            return JSONResponse({"error": detail}, exc.status_code, headers=exc.headers)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json({"error": "internal error; see the server log"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Called in the event loop on purpose: start() only starts threads (open() ran
        # before the server listened), stop() joins them within a frame's time, and a
        # worker thread from anyio would outlive the server.
        if manage:
            service.start()
        try:
            yield
        finally:
            if manage:
                service.stop()

    async def ws(websocket: WebSocket) -> None:
        await _serve_websocket(service, websocket)

    routes = [
        Route("/", index),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/api/info", info),
        Route("/api/objects", objects, methods=["GET", "POST", "DELETE"]),
        Route("/api/objects/{object_id}", one_object, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/api/everything", everything, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error, HTTPException: api_error, Exception: api_error},
        lifespan=lifespan,
    )
    app.add_middleware(
        _Guard, token=cfg.token, host_names=cfg.host_names, max_body=cfg.max_body_bytes
    )
    app.state.service = service
    return app


def _apply_op(
    service: StreamService, op: str, object_id: int | None, data: Any
) -> tuple[int, dict[str, Any]]:
    """Run one prompt operation; shared by the HTTP routes and the WebSocket."""
    max_points = service.config.max_points
    if op == "add":
        oid = service.add(parse_prompt(data, max_points=max_points))
        return 201, service.object(oid)
    if object_id is None:
        raise ApiError(422, f'{op}: needs the object\'s "id"')
    if op == "update":
        service.update(object_id, parse_prompt(data, max_points=max_points))
        return 200, service.object(object_id)
    if op == "patch":
        prompt = parse_prompt(data, max_points=max_points)
        service.update(object_id, prompt, extend=True)
        return 200, service.object(object_id)
    if op == "remove":
        service.remove(object_id)
        return 200, {"id": object_id, "removed": True}
    raise ApiError(422, f"op: got {_short(op)}, expected add, update, patch, remove or clear")


def _echo_id(message: Any) -> str | int | None:
    """The message's ``request_id`` if it is safe to echo back, else ``None``."""
    rid = message.get("request_id") if isinstance(message, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return None
    return rid if not isinstance(rid, str) or len(rid) <= _ECHO_LIMIT else None


def _ws_op(service: StreamService, message: Any) -> dict[str, Any]:
    """Decode and run one WebSocket prompt message; the reply to send."""
    if not isinstance(message, dict):
        raise ApiError(422, f"message: got {type(message).__name__}, expected a JSON object")
    message = dict(message)
    op = message.pop("op", None)
    request_id = message.pop("request_id", None)
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, (str, int))
    ):
        raise ApiError(422, "request_id: expected a string or an integer")
    if isinstance(request_id, str) and len(request_id) > _ECHO_LIMIT:
        raise ApiError(422, f"request_id: longer than {_ECHO_LIMIT} characters")
    raw_id = message.pop("id", None)
    object_id = None
    if raw_id is not None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, int) or raw_id <= 0:
            raise ApiError(422, f"id: got {_short(raw_id)}, expected a positive integer")
        object_id = raw_id
    if op == "clear":
        status, data = 200, {"removed": service.clear()}
    elif op in ("add", "update", "patch", "remove"):
        if op == "remove" and message:
            raise ApiError(422, f"remove: unexpected field {_short(sorted(message)[0])}")
        status, data = _apply_op(service, op, object_id, message)
    else:
        raise ApiError(422, f"op: got {_short(op)}, expected add, update, patch, remove or clear")
    return {"type": "reply", "op": op, "request_id": request_id, "status": status, **data}


async def _serve_websocket(service: StreamService, websocket: WebSocket) -> None:
    cfg = service.config
    await websocket.accept()
    try:
        frames = _query_flag(websocket.query_params, "frames", False)
        masks = _query_flag(websocket.query_params, "masks", True)
    except ApiError as e:
        await websocket.close(code=1008, reason=str(e)[:120])
        return
    subscriber = Subscriber(
        asyncio.get_running_loop(),
        frames=frames,
        masks=masks,
        maxlen=cfg.client_queue,
        metrics=service.metrics,
    )
    lock = asyncio.Lock()  # a reply must not land between a frame's JSON and its JPEG

    async def send_text(text: str) -> None:
        async with lock:
            await websocket.send_text(text)

    async def sender() -> None:
        while True:
            message = await subscriber.get()
            async with lock:
                await websocket.send_text(message.text)
                if message.jpeg is not None:
                    await websocket.send_bytes(message.jpeg)
            service.metrics.message_sent()

    hello = {
        "type": "hello",
        **service.info,
        **service.status_json(),
        "frames": frames,
        "masks": masks,
        "objects": service.objects(),
    }
    try:
        service.subscribe(subscriber)
    except ApiError as e:
        await websocket.close(code=1013, reason=str(e)[:120])  # 1013: try again later
        return
    task: asyncio.Task[None] | None = None
    try:
        await send_text(json.dumps(hello))
        task = asyncio.create_task(sender())
        await _receive_loop(service, websocket, send_text, cfg.max_body_bytes)
    except WebSocketDisconnect:
        pass
    finally:
        service.unsubscribe(subscriber)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _receive_loop(
    service: StreamService,
    websocket: WebSocket,
    send_text: Callable[[str], Awaitable[None]],
    limit: int,
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            if len(data) > limit:
                await websocket.close(code=1009, reason=f"message over {limit} bytes")
                return
            reply: dict[str, Any] = {
                "type": "error",
                "status": 400,
                "error": "binary messages are not understood; send JSON text",
            }
        elif len(text.encode("utf-8", "surrogateescape")) > limit:
            await websocket.close(code=1009, reason=f"message over {limit} bytes")
            return
        else:
            request_id = None
            try:
                data = _decode_json(text)
                request_id = _echo_id(data)
                reply = _ws_op(service, data)
            except ApiError as e:
                if e.status == 422:
                    service.metrics.prompt_rejected()
                reply = {
                    "type": "error",
                    "request_id": request_id,
                    "status": e.status,
                    "error": str(e),
                }
        await send_text(json.dumps(reply))
