"""The gateway's HTTP application: ``create_app(settings, channel=None) -> Starlette``.

Thin over the gRPC services: each handler reads and checks its input, makes one gRPC
request, and maps the answer to JSON (or the error to an RFC 9457 problem, see
:mod:`services.gateway.problems`). Order of work on a request (:class:`Guard`): request id,
then the bearer token (401 before any body is read), then the declared body size (413
before it is read); the form reader (:mod:`services.gateway.forms`) counts the bytes of
bodies that do not declare one. Nothing of a photo or a result is logged or written to
disk: logs carry request ids, sizes, statuses and reasons.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import grpc
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from drape.animate.v1 import animate_service_pb2 as apb
from drape.common.v1 import common_pb2, operations_pb2
from drape.experiments.v1 import experiment_service_pb2 as epb
from drape.tryon.v1 import tryon_service_pb2 as tpb
from services.common.context import new_id
from services.common.security import TokenFile
from services.common.validation import shown
from services.gateway import media
from services.gateway.forms import FormSpec, read_form, too_large
from services.gateway.gallery import Gallery, unavailable
from services.gateway.openapi import openapi_document
from services.gateway.problems import Problem, from_status_proto
from services.gateway.upstream import Upstream, busy

log = logging.getLogger("drape.gateway")

STATIC_DIR = Path(__file__).resolve().parent / "static"

# A caller's X-Request-Id is used when it is a valid gRPC request_id (1-128 printable ASCII
# characters without spaces); otherwise the gateway makes one.
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_GARMENT_ID = re.compile(r"[0-9a-f]{64}")
# Operation ids are secrets.token_urlsafe (URL-safe base64); the gRPC limit is 128.
_CLIP_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_UNIT = re.compile(r"[\x21-\x7e]{1,128}")
CATEGORIES = ("top", "bottom", "dress", "outerwear")

# Deadlines (seconds) of the quick calls; try-on and registration use
# DRAPE_GATEWAY_CALL_TIMEOUT_SECONDS, progress streams DRAPE_GATEWAY_EVENTS_MAX_SECONDS.
QUICK_TIMEOUT_S = 15.0
START_CLIP_TIMEOUT_S = 60.0
GET_CLIP_TIMEOUT_S = 60.0
# Most seconds between two Server-Sent Events before a keep-alive comment is sent.
KEEPALIVE_S = 15.0
# Most seconds a request body may take to arrive (a slow sender holds a connection).
BODY_READ_S = 120.0

TRYON_FORM = FormSpec(
    files=frozenset({"photo", "flat_lay"}), texts=frozenset({"garment_id", "category"})
)
CLIP_FORM = FormSpec(files=frozenset({"still"}), texts=frozenset({"motion"}))
# gRPC field paths → the form fields a caller sent.
TRYON_FIELDS = {
    "person": "photo",
    "garments[0].flat_lay": "flat_lay",
    "garments[0].garment_id": "garment_id",
    "garments[0].category": "category",
    "garments[0]": "garment_id",
    "garments": "garment_id",
}
CLIP_FIELDS = {
    "still": "still",
    "template_name": "motion",
    "motion_template": "motion",
    "operation_id": "id",
}
ASSIGN_FIELDS = {"experiment.experiment_id": "name", "experiment.unit_id": "unit"}


@dataclasses.dataclass
class Gateway:
    """What the handlers share."""

    settings: Any
    upstream: Upstream
    gallery: Gallery
    cache: media.ClipCache
    tokens: TokenFile | None
    uploads: int = 0  # requests holding an upload (from reading it to their answer)


# ----------------------------------------------------------------------------- guard


class Guard:
    """ASGI middleware in front of every route: request id, auth, body size, access log.

    Args:
        app: the wrapped application.
        tokens: the accepted bearer tokens (auth on), or None.
        max_body: DRAPE_GATEWAY_MAX_UPLOAD_BYTES.
    """

    def __init__(self, app: ASGIApp, tokens: TokenFile | None, max_body: int) -> None:
        self.app, self.tokens, self.max_body = app, tokens, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = headers.get("x-request-id", "")
        if not _REQUEST_ID.fullmatch(rid):
            rid = new_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        path: str = scope["path"]
        api = path.startswith("/v1/")
        t0 = time.perf_counter()
        seen = {"status": 0, "bytes": 0}

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                h = MutableHeaders(scope=message)
                h["X-Request-Id"] = rid
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "no-referrer")
                if api and "cache-control" not in h:
                    h["Cache-Control"] = "no-store"  # personal results: no browser disk cache
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            problem = self._check(headers, api, state)
            if problem is not None:
                await problem.response(rid)(scope, receive, send_wrapped)
            else:
                await self.app(scope, receive, send_wrapped)
        finally:
            quiet = path in ("/healthz", "/readyz")
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "http",
                extra={
                    "request_id": rid,
                    "method": scope.get("method", ""),
                    "path": path[:200],  # never the query string
                    "status": seen["status"],
                    "bytes_in": headers.get("content-length", "")[:20],
                    "bytes_out": seen["bytes"],
                    "ms": round((time.perf_counter() - t0) * 1000, 1),
                },
            )

    def _check(self, headers: Headers, api: bool, state: dict) -> Problem | None:
        if api and self.tokens is not None:
            auth = headers.get("authorization")
            challenge = {"WWW-Authenticate": 'Bearer realm="drape"'}
            if auth is None:
                return Problem(
                    401,
                    "TOKEN_MISSING",
                    "this gateway requires a bearer token: send 'Authorization: Bearer <token>'",
                    headers=challenge,
                )
            scheme, _, token = auth.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or not self.tokens.check(token):
                return Problem(
                    401,
                    "TOKEN_INVALID",
                    "the bearer token is not valid",
                    headers={"WWW-Authenticate": 'Bearer realm="drape", error="invalid_token"'},
                )
            state["token"] = token
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 20:
                return Problem(400, "CONTENT_LENGTH_INVALID", "Content-Length is not a number")
            if int(length) > self.max_body:
                return too_large(self.max_body)
        return None


# ----------------------------------------------------------------------------- helpers


def _rid(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or new_id()


def _meta(gw: Gateway, request: Request):
    state = request.scope.get("state", {})
    return gw.upstream.caller_meta(
        _rid(request), state.get("token", ""), request.headers.get("traceparent", "")
    )


def _json(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


async def _form(gw: Gateway, request: Request, spec: FormSpec) -> dict[str, bytes | str]:
    try:
        with anyio.fail_after(BODY_READ_S):
            return await read_form(request, spec, gw.settings.gateway_max_upload_bytes)
    except TimeoutError:
        raise Problem(408, "REQUEST_TIMEOUT", f"the body took over {BODY_READ_S:g} s") from None


def _warnings(meta: Any) -> list[dict[str, str]]:
    return [{"reason": w.reason, "message": w.message} for w in meta.warnings]


def _path_id(request: Request, name: str, pattern: re.Pattern, reason: str, what: str) -> str:
    """The path parameter ``name``, or 400 ``reason`` saying it ``what`` (is not ...)."""
    value = request.path_params[name]
    if not pattern.fullmatch(value):
        raise Problem(400, reason, f"{name.replace('_', ' ')} {shown(value)} {what}", field="id")
    return value


def _clip_id(request: Request) -> str:
    return _path_id(
        request, "clip_id", _CLIP_ID, "CLIP_ID_INVALID", "is not an id this gateway returned"
    )


def _garment_id(request: Request) -> str:
    return _path_id(
        request, "garment_id", _GARMENT_ID, "GARMENT_ID_INVALID", "is not 64 lowercase hex digits"
    )


def _state_name(op: Any) -> str:
    return operations_pb2.OperationState.Name(op.state).removeprefix("OPERATION_STATE_")


def _fraction(op: Any) -> float:
    if op.state == operations_pb2.OPERATION_STATE_SUCCEEDED:
        return 1.0
    p = op.progress
    return round(min(1.0, p.done / p.total), 4) if p.total > 0 else 0.0


TERMINAL = {
    operations_pb2.OPERATION_STATE_SUCCEEDED,
    operations_pb2.OPERATION_STATE_FAILED,
    operations_pb2.OPERATION_STATE_CANCELLED,
}


def _op_problem(op: Any) -> Problem:
    """The problem of a FAILED or CANCELLED operation."""
    if op.HasField("error") and op.error.code:
        return from_status_proto(op.error, CLIP_FIELDS)
    return Problem(409, "CANCELLED", "the clip was cancelled")


def _clip_urls(clip_id: str) -> dict[str, str]:
    base = f"/v1/clips/{clip_id}"
    return {
        "events_url": f"{base}/events",
        "status_url": base,
        "video_url": f"{base}/video",
        "poster_url": f"{base}/poster",
    }


def _ttl(op: Any) -> float | None:
    """Seconds until the service forgets ``op`` (None when it does not say)."""
    if not op.HasField("expire_time"):
        return None
    return op.expire_time.ToMicroseconds() / 1e6 - time.time()


def _cache_key(gw: Gateway, request: Request, clip_id: str) -> tuple[str, str]:
    """Clips are the caller's own when tokens are on: the cache key carries the token's
    digest, so one caller never reads another's cached clip."""
    token = request.scope.get("state", {}).get("token", "")
    scope = hashlib.sha256(token.encode()).hexdigest()[:32] if token else ""
    return scope, clip_id


# ----------------------------------------------------------------------------- handlers


def _routes(gw: Gateway) -> list:
    settings, upstream, gallery = gw.settings, gw.upstream, gw.gallery

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            serving = await upstream.serving()
        except Problem:
            serving = False
        if not serving:
            raise Problem(503, "UPSTREAM_NOT_SERVING", "the gRPC services are not serving (yet)")
        return _json({"status": "ready"})

    async def openapi(request: Request) -> Response:
        return _json(openapi_document(settings))

    async def root(request: Request) -> Response:
        return RedirectResponse("/demo", status_code=307)

    async def demo(request: Request) -> Response:
        page = STATIC_DIR / "demo.html"
        if not page.is_file():
            raise Problem(404, "PAGE_MISSING", "the demo page is not installed")
        return FileResponse(page, media_type="text/html; charset=utf-8")

    async def demo_config(request: Request) -> Response:
        return _json(
            {
                "auth": gw.tokens is not None,
                "default_motion": settings.gateway_clip_motion,
                "max_upload_bytes": settings.gateway_max_upload_bytes,
            }
        )

    async def garments(request: Request) -> Response:
        await _ensure_gallery(request)
        return _json({"garments": gallery.listing()})

    async def _ensure_gallery(request: Request) -> None:
        if gallery.ready:
            return
        try:
            await gallery.ensure(upstream, _meta(gw, request))
        except Problem as p:
            raise unavailable(p) from None

    async def _gallery_item(request: Request):
        gid = _garment_id(request)
        await _ensure_gallery(request)
        item = gallery.get(gid)
        if item is None:
            raise Problem(404, "GARMENT_ID_UNKNOWN", "no gallery garment has this id", field="id")
        return item

    async def garment(request: Request) -> Response:
        return _json((await _gallery_item(request)).describe())

    async def garment_image(request: Request) -> Response:
        item = await _gallery_item(request)
        return Response(
            item.png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"}
        )

    async def tryon(request: Request) -> Response:
        form = await _form(gw, request, TRYON_FORM)
        photo, gid, flat = form.get("photo"), form.get("garment_id"), form.get("flat_lay")
        category = form.get("category")
        if photo is None:
            raise Problem(
                400, "FIELD_MISSING", "the form needs a 'photo' file: the shopper's photo", "photo"
            )
        if gid is not None and flat is not None:
            raise Problem(
                400,
                "GARMENT_SOURCE_CONFLICT",
                "send either garment_id or flat_lay, not both",
                "garment_id",
            )
        if gid is None and flat is None:
            raise Problem(
                400,
                "GARMENT_SOURCE_MISSING",
                "send garment_id (from GET /v1/garments) or a flat_lay file",
                "garment_id",
            )
        hint = 0
        if category is not None:
            if category not in CATEGORIES:
                raise Problem(
                    400,
                    "GARMENT_CATEGORY_INVALID",
                    f"category {shown(category)} is not one of {', '.join(CATEGORIES)}",
                    "category",
                )
            if gid is not None:
                raise Problem(
                    400,
                    "GARMENT_HINT_CONFLICT",
                    "a registered garment keeps its own category; send category with a "
                    "flat_lay only",
                    "category",
                )
            hint = tpb.GarmentCategory.Value("GARMENT_CATEGORY_" + category.upper())
        meta = _meta(gw, request)
        if gid is not None:
            await _ensure_gallery_quietly(request)
            garment = tpb.Garment(garment_id=str(gid))
        else:
            garment = tpb.Garment(flat_lay=common_pb2.Image(data=flat), category=hint)
        req = tpb.TryOnRequest(
            request_id=meta.request_id,
            person=common_pb2.Image(data=photo),
            garments=[garment],
            output_format=common_pb2.IMAGE_FORMAT_JPEG,
        )
        del photo, flat, form  # the request holds the only copy now
        timeout = settings.gateway_call_timeout_seconds

        async def call() -> Any:
            try:
                return await upstream.unary(upstream.tryon.TryOn, req, meta, timeout, TRYON_FIELDS)
            except Problem as p:
                if p.reason != "GARMENT_ID_UNKNOWN" or gallery.get(garment.garment_id) is None:
                    raise
                # A gallery garment the service forgot (evicted, restarted): register again.
                new = await gallery.reregister(upstream, garment.garment_id, meta)
                req.garments[0].garment_id = new or garment.garment_id
                return await upstream.unary(upstream.tryon.TryOn, req, meta, timeout, TRYON_FIELDS)

        r = await _while_connected(request, call)
        return _json(
            {
                "still": {
                    "content_type": "image/jpeg",
                    "data": base64.b64encode(r.image.data).decode("ascii"),
                },
                "width": r.image.width,
                "height": r.image.height,
                "warnings": _warnings(r.meta),
                "request_id": meta.request_id,
            }
        )

    async def _ensure_gallery_quietly(request: Request) -> None:
        # The gallery's ids are needed to re-register a forgotten one; a failure here is
        # the try-on's to report, not the gallery's.
        with suppress(Problem):
            await _ensure_gallery(request)

    async def motions(request: Request) -> Response:
        r = await upstream.unary(
            upstream.animate.ListMotions,
            apb.ListMotionsRequest(request_id=_rid(request)),
            _meta(gw, request),
            QUICK_TIMEOUT_S,
        )
        return _json(
            {
                "motions": [
                    {
                        "name": m.name,
                        "description": m.description,
                        "framing": apb.MotionFraming.Name(m.framing).removeprefix(
                            "MOTION_FRAMING_"
                        ),
                        "duration_s": round(m.duration_seconds, 3),
                        "fps": m.fps,
                        "loops": m.loops,
                        "default": m.name == settings.gateway_clip_motion,
                    }
                    for m in r.motions
                ]
            }
        )

    async def start_clip(request: Request) -> Response:
        form = await _form(gw, request, CLIP_FORM)
        still = form.get("still")
        if still is None:
            raise Problem(
                400,
                "FIELD_MISSING",
                "the form needs a 'still' file: the image returned by POST /v1/tryon",
                "still",
            )
        motion = str(form.get("motion") or "") or settings.gateway_clip_motion
        del form
        width, height = await upstream.run_blocking(
            lambda data, side, _runner: media.clip_size(data, side),
            still,
            settings.gateway_clip_max_side,
        )
        meta = _meta(gw, request)
        req = apb.StartClipRequest(
            request_id=meta.request_id,
            still=common_pb2.Image(data=still),
            template_name=motion,
            fps=settings.gateway_clip_fps,
            width=width,
            height=height,
            duration_seconds=settings.gateway_clip_seconds,
            loop=True,
            output=apb.ClipOutputOptions(
                preview_format=apb.PREVIEW_FORMAT_NONE,
                poster_frame=True,
                poster_format=common_pb2.IMAGE_FORMAT_JPEG,
            ),
        )
        del still
        op = await upstream.unary(
            upstream.animate.StartClip, req, meta, START_CLIP_TIMEOUT_S, CLIP_FIELDS
        )
        urls = _clip_urls(op.id)
        return _json({"id": op.id, **urls}, status=202, headers={"Location": urls["status_url"]})

    async def _get_clip(request: Request, clip_id: str) -> Any:
        return await upstream.unary(
            upstream.animate.GetClip,
            operations_pb2.OperationRef(operation_id=clip_id),
            _meta(gw, request),
            GET_CLIP_TIMEOUT_S,
            CLIP_FIELDS,
        )

    def _remember(request: Request, clip_id: str, op: Any, result: Any) -> media.ClipFiles:
        files = media.ClipFiles(result.clip.data, result.poster.data, _warnings(result.meta), 0)
        gw.cache.put(_cache_key(gw, request, clip_id), files, _ttl(op))
        return files

    async def clip_status(request: Request) -> Response:
        clip_id = _clip_id(request)
        r = await _get_clip(request, clip_id)
        op = r.operation
        warnings: list[dict[str, str]] = []
        if op.state == operations_pb2.OPERATION_STATE_SUCCEEDED and r.HasField("result"):
            warnings = _remember(request, clip_id, op, r.result).warnings
        error = None
        if op.state in (
            operations_pb2.OPERATION_STATE_FAILED,
            operations_pb2.OPERATION_STATE_CANCELLED,
        ):
            error = _op_problem(op).body(_rid(request))
        return _json(
            {
                "id": clip_id,
                "state": _state_name(op),
                "progress": _fraction(op),
                "stage": op.progress.stage,
                "warnings": warnings,
                "error": error,
            }
        )

    async def _finished(request: Request, clip_id: str) -> media.ClipFiles:
        cached = gw.cache.get(_cache_key(gw, request, clip_id))
        if cached is not None:
            return cached
        r = await _get_clip(request, clip_id)
        op = r.operation
        if op.state == operations_pb2.OPERATION_STATE_SUCCEEDED and r.HasField("result"):
            return _remember(request, clip_id, op, r.result)
        if op.state in TERMINAL:
            raise _op_problem(op)
        raise Problem(
            409,
            "CLIP_NOT_READY",
            f"the clip is {_state_name(op).lower()} ({_fraction(op):.0%}); follow its events",
            headers={"Retry-After": "1"},
        )

    async def clip_video(request: Request) -> Response:
        clip_id = _clip_id(request)
        files = await _finished(request, clip_id)
        data, size = files.video, len(files.video)
        etag = f'"{clip_id}"'
        headers = {"Accept-Ranges": "bytes", "ETag": etag}
        rng = media.parse_range(request.headers.get("range", ""), size)
        if_range = request.headers.get("if-range")
        if if_range is not None and if_range.strip() != etag:
            rng = None  # the caller's copy is another representation: send it whole
        if rng is False:
            raise Problem(
                416,
                "RANGE_NOT_SATISFIABLE",
                f"the clip has {size} bytes",
                headers={"Content-Range": f"bytes */{size}", **headers},
            )
        if rng is None:
            return Response(data, media_type="video/mp4", headers=headers)
        first, last = rng
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Response(
            data[first : last + 1], status_code=206, media_type="video/mp4", headers=headers
        )

    async def clip_poster(request: Request) -> Response:
        clip_id = _clip_id(request)
        files = await _finished(request, clip_id)
        return Response(files.poster, media_type="image/jpeg")

    async def clip_events(request: Request) -> Response:
        clip_id = _clip_id(request)
        meta = _meta(gw, request)
        stream = upstream.watch_clip(
            operations_pb2.OperationRef(operation_id=clip_id),
            meta,
            settings.gateway_events_max_seconds,
            CLIP_FIELDS,
        )
        try:
            # The first message comes at once (the current state), or the refusal: an
            # unknown clip is a 404 answer, not an event.
            first = await stream.next(KEEPALIVE_S)
        except TimeoutError:
            first = None
        except BaseException:
            stream.close()
            raise
        return EventStream(_events(request, clip_id, stream, first), stream)

    async def _events(
        request: Request, clip_id: str, stream: Any, first: Any
    ) -> AsyncIterator[bytes]:
        deadline = anyio.current_time() + settings.gateway_events_max_seconds
        msg = first
        try:
            while True:
                if msg is not None:
                    op = msg.operation
                    yield _sse(
                        "progress",
                        {
                            "progress": _fraction(op),
                            "stage": op.progress.stage,
                            "state": _state_name(op),
                        },
                    )
                    if op.state in TERMINAL:
                        if op.state == operations_pb2.OPERATION_STATE_SUCCEEDED:
                            files = _remember(request, clip_id, op, msg.result)
                            yield _sse(
                                "done",
                                {
                                    "video_url": f"/v1/clips/{clip_id}/video",
                                    "poster_url": f"/v1/clips/{clip_id}/poster",
                                    "warnings": files.warnings,
                                },
                            )
                        else:
                            yield _sse("error", _op_problem(op).body(_rid(request)))
                        return
                if anyio.current_time() > deadline:
                    raise Problem(
                        504, "EVENTS_TIMEOUT", "the progress stream reached its longest duration"
                    )
                try:
                    msg = await stream.next(KEEPALIVE_S)
                except TimeoutError:
                    msg = None
                    yield b": ping\n\n"
                    continue
                if msg is None:  # ended without a final state
                    raise Problem(502, "UPSTREAM_FAILED", "the progress stream ended early")
        except Problem as p:
            yield _sse("error", p.body(_rid(request)))
        finally:
            stream.close()

    async def assignment(request: Request) -> Response:
        name = request.path_params["name"]
        unit = request.query_params.get("unit")
        if unit is None or unit == "":
            raise Problem(
                400, "FIELD_MISSING", "send the unit: ?unit=<shopper or session id>", "unit"
            )
        if not _UNIT.fullmatch(unit):
            raise Problem(
                400,
                "INVALID_UNIT_ID",
                "unit must be 1-128 printable ASCII characters without spaces",
                "unit",
            )
        req = epb.AssignRequest(
            request_id=_rid(request),
            experiment=common_pb2.Experiment(experiment_id=name, unit_id=unit),
        )
        try:
            r = await upstream.unary(
                upstream.experiments.Assign, req, _meta(gw, request), QUICK_TIMEOUT_S, ASSIGN_FIELDS
            )
        except Problem as p:
            if p.reason == "NOT_IMPLEMENTED":
                raise Problem(
                    404,
                    "EXPERIMENTS_NOT_CONFIGURED",
                    "no experiment service runs behind this gateway",
                ) from None
            raise
        return _json({"experiment": name, "unit": unit, "variant": r.variant})

    return [
        Route("/", root, methods=["GET"], include_in_schema=False),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/demo", demo, methods=["GET"]),
        Route("/demo/config.json", demo_config, methods=["GET"]),
        Mount("/demo/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False)),
        Route("/v1/garments", garments, methods=["GET"]),
        Route("/v1/garments/{garment_id}", garment, methods=["GET"]),
        Route("/v1/garments/{garment_id}/image", garment_image, methods=["GET"]),
        Route("/v1/tryon", _upload(gw, tryon), methods=["POST"]),
        Route("/v1/motions", motions, methods=["GET"]),
        Route("/v1/clips", _upload(gw, start_clip), methods=["POST"]),
        Route("/v1/clips/{clip_id}", clip_status, methods=["GET"]),
        Route("/v1/clips/{clip_id}/events", clip_events, methods=["GET"]),
        Route("/v1/clips/{clip_id}/video", clip_video, methods=["GET"]),
        Route("/v1/clips/{clip_id}/poster", clip_poster, methods=["GET"]),
        Route("/v1/experiments/{name}/assignment", assignment, methods=["GET"]),
    ]


async def _while_connected(request: Request, fn: Callable) -> Any:
    """``await fn()``, cancelled when the caller disconnects (its gRPC call is cancelled
    with it: a try-on nobody waits for stops taking a worker). Call it after the body was
    read: it listens for the disconnect on the request's channel.

    Raises:
        ClientDisconnect: the caller left first.
    """
    outcome: dict[str, Any] = {}

    async def watch(scope: anyio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        outcome["gone"] = True
        scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, tg.cancel_scope)
            outcome["value"] = await fn()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the call's own error (a Problem), unwrapped
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if outcome.get("gone"):
        raise ClientDisconnect()
    return outcome["value"]


def _upload(gw: Gateway, handler: Callable) -> Callable:
    """``handler`` holding one of DRAPE_GATEWAY_MAX_CONCURRENT_CALLS upload slots from the
    first byte of its body to its answer: the bodies held in memory at once are bounded
    (one more is refused with 429 CONCURRENCY_LIMIT before it is read)."""

    async def run(request: Request) -> Response:
        if gw.uploads >= gw.settings.gateway_max_concurrent_calls:
            raise busy("uploads")
        gw.uploads += 1
        try:
            return await handler(request)
        finally:
            gw.uploads -= 1

    return run


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class EventStream(StreamingResponse):
    """``text/event-stream`` whose gRPC stream is closed however the response ends (also
    when the client left before the first byte, when the body iterator never starts)."""

    def __init__(self, content: AsyncIterator[bytes], stream: Any) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.close()


# ----------------------------------------------------------------------------- errors


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    if exc.status >= 500:
        log.warning("upstream problem", extra={"status": exc.status, "reason": exc.reason})
    return exc.response(_rid(request))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reasons = {404: "ROUTE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    detail = {404: "no such endpoint", 405: "this endpoint does not take that method"}
    return Problem(
        exc.status_code,
        reasons.get(exc.status_code, "HTTP_ERROR"),
        detail.get(exc.status_code, str(exc.detail)[:200]),
        headers=dict(exc.headers or {}),
    ).response(_rid(request))


async def _on_disconnect(request: Request, exc: Exception) -> Response:
    # The caller left while sending its body: nobody reads this answer.
    return Problem(400, "CLIENT_DISCONNECTED", "the body was not sent whole").response(
        _rid(request)
    )


async def _on_error(request: Request, exc: Exception) -> Response:
    trace = new_id()
    log.error(
        "internal error",
        extra={"trace_id": trace, "error": type(exc).__name__},
        exc_info=(type(exc), exc, None),  # the type and message, no frames' locals
    )
    return Problem(
        500,
        "INTERNAL_ERROR",
        f"an internal error occurred; it was logged with trace id {trace}",
    ).response(_rid(request))


# ----------------------------------------------------------------------------- factory


def create_app(settings: Any, channel: grpc.Channel | None = None) -> Starlette:
    """The gateway as an ASGI application.

    Args:
        settings: :class:`~services.common.config.Settings` (the ``gateway_*`` settings,
            auth and client TLS).
        channel: a gRPC channel to the services (tests); default: one to
            ``DRAPE_GATEWAY_UPSTREAM``.

    Returns:
        The Starlette application. Its lifespan registers the demo gallery (retried in the
        background until the services answer) and closes the channel at shutdown.

    Raises:
        ConfigError: when the tokens file (DRAPE_AUTH_TOKENS_FILE) is missing or invalid.
    """
    tokens = TokenFile(settings.auth_tokens_file) if settings.auth_tokens_file else None
    upstream = Upstream(settings, channel)
    gw = Gateway(settings, upstream, Gallery(), media.ClipCache(), tokens)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_register_gallery, gw)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        upstream.close()

    middleware = []
    if settings.gateway_cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.gateway_cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
                expose_headers=["X-Request-Id", "Content-Range", "Accept-Ranges", "Retry-After"],
                max_age=600,
            )
        )
    middleware.append(Middleware(Guard, tokens=tokens, max_body=settings.gateway_max_upload_bytes))
    app = Starlette(
        routes=_routes(gw),
        middleware=middleware,
        exception_handlers={
            Problem: _on_problem,
            HTTPException: _on_http,
            ClientDisconnect: _on_disconnect,
            Exception: _on_error,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app


async def _register_gallery(gw: Gateway) -> None:
    """Register the gallery at start-up, retrying with backoff until it works (the services
    may start after the gateway); with auth on and no DRAPE_CLIENT_TOKEN_FILE the first
    caller's token registers it instead."""
    delay = 0.5
    while not gw.gallery.ready:
        try:
            await gw.gallery.ensure(gw.upstream, gw.upstream.own_meta(new_id()))
        except Problem as p:
            if p.status in (401, 403):
                log.info("gallery waits for an authenticated caller", extra={"reason": p.reason})
                return
            log.info("gallery not registered yet", extra={"reason": p.reason})
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)
