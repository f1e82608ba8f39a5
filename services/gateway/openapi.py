"""The gateway's OpenAPI 3.1 document, written by hand beside the handlers.

It is the contract schemathesis checks the running gateway against
(``benchmarks/fuzz_gateway.py``, ``tests/test_gateway.py``): every status an operation can
answer, its media type and its body schema. Change a handler, change this.
"""

from __future__ import annotations

from typing import Any

GARMENT_ID = "^[0-9a-f]{64}$"
CLIP_ID = "^[A-Za-z0-9_-]{1,128}$"
EXPERIMENT_ID = "^[a-z0-9][a-z0-9._-]{0,63}$"
UNIT = "^[!-~]{1,128}$"
# Empty: the gateway's default motion.
MOTION = "^([a-z0-9_-]{1,64})?$"

PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Error answers every /v1 operation may give.
_COMMON = {
    "429": _problem("too many calls in flight (CONCURRENCY_LIMIT, QUEUE_FULL); retry later"),
    "500": _problem("the gateway's own fault (INTERNAL_ERROR, with a trace id)"),
    "502": _problem("the service answered something the gateway cannot use"),
    "503": _problem("the services are unavailable (UPSTREAM_UNAVAILABLE)"),
    "504": _problem("the service did not answer in time (UPSTREAM_TIMEOUT)"),
}
_AUTH = {"401": _problem("no or an invalid bearer token (TOKEN_MISSING, TOKEN_INVALID)")}
_UPLOAD = {
    "400": _problem(
        "malformed form (FORM_INVALID, FIELD_MISSING, FIELD_UNKNOWN, FIELD_DUPLICATE, "
        "FIELD_TOO_LONG, ...)"
    ),
    "408": _problem("the body took too long to arrive (REQUEST_TIMEOUT)"),
    "409": _problem("a conflicting request (e.g. REQUEST_ID_REUSED)"),
    "413": _problem(
        "the body is over DRAPE_GATEWAY_MAX_UPLOAD_BYTES (REQUEST_TOO_LARGE) or an image "
        "is over the service's limit (IMAGE_TOO_LARGE)"
    ),
    "415": _problem("not multipart/form-data (CONTENT_TYPE_UNSUPPORTED)"),
    "422": _problem(
        "the photo or garment is refused, with the service's reason (NO_PERSON_DETECTED, "
        "PERSON_TOO_SMALL, POSE_UNSUPPORTED, GARMENT_FIT_FAILED, IMAGE_UNRECOGNIZED, ...)"
    ),
}


def _links(operation_ids: tuple[str, ...], parameter: str, value: str) -> dict[str, Any]:
    """Response links: where an id in this response is used next."""
    return {op: {"operationId": op, "parameters": {parameter: value}} for op in operation_ids}


def _path_param(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def _op(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    api: bool,
    auth: bool,
    parameters: list | None = None,
    body: dict | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if parameters:
        out["parameters"] = parameters
    if body:
        out["requestBody"] = body
    all_responses = dict(responses)
    if api:
        all_responses = {**_COMMON, **all_responses}
        if auth:
            all_responses.update(_AUTH)
    out["responses"] = dict(sorted(all_responses.items()))
    if auth:
        out["security"] = [{"bearer": []}] if api else []
    return out


_PHOTO = {
    "type": "string",
    "format": "binary",
    "description": "the shopper's photo (JPEG, PNG, WebP, BMP, TIFF)",
}
_GARMENT_FIELD = {
    "type": "string",
    "pattern": GARMENT_ID,
    "description": "a gallery garment (GET /v1/garments)",
}


def _schemas() -> dict[str, Any]:
    warning = {
        "type": "object",
        "required": ["reason", "message"],
        "properties": {"reason": {"type": "string"}, "message": {"type": "string"}},
    }
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `reason` is the service's ErrorInfo reason",
            "required": ["type", "title", "status", "detail", "reason", "request_id"],
            "properties": {
                "type": {"type": "string", "pattern": "^urn:drape:problem:[a-z0-9-]+$"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "reason": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                "field": {"type": "string"},
                "request_id": {"type": "string"},
            },
        },
        "Warning": warning,
        "Garment": {
            "type": "object",
            "required": ["id", "name", "category", "image_url"],
            "properties": {
                "id": {"type": "string", "pattern": GARMENT_ID},
                "name": {"type": "string"},
                "category": {"enum": ["TOP", "BOTTOM", "DRESS", "OUTERWEAR"]},
                "image_url": {"type": "string"},
                "sleeve": {"enum": ["sleeveless", "short", "three_quarter", "long"]},
                "length": {
                    "enum": ["cropped", "waist", "hip", "thigh", "knee", "calf", "ankle", "floor"]
                },
            },
        },
        "GarmentList": {
            "type": "object",
            "required": ["garments"],
            "properties": {"garments": {"type": "array", "items": _ref("Garment")}},
        },
        "TryOnForm": {
            "type": "object",
            "description": "exactly one of garment_id and flat_lay; category only with flat_lay",
            "required": ["photo"],
            "properties": {
                "photo": _PHOTO,
                "garment_id": _GARMENT_FIELD,
                "flat_lay": {
                    "type": "string",
                    "format": "binary",
                    "description": "a garment packshot",
                },
                "category": {
                    "enum": ["top", "bottom", "dress", "outerwear"],
                    "description": "category hint for the flat_lay",
                },
            },
            "additionalProperties": False,
            # Exactly one source: at least one of the two, and nothing else beside a
            # garment_id (JSON Schema 2020-12 dependentSchemas; no `not`, no `oneOf` over
            # the binary fields).
            "anyOf": [{"required": ["garment_id"]}, {"required": ["flat_lay"]}],
            "dependentSchemas": {
                "garment_id": {"properties": {"flat_lay": False, "category": False}}
            },
        },
        "TryOnResult": {
            "type": "object",
            "required": ["still", "width", "height", "warnings", "request_id"],
            "properties": {
                "still": {
                    "type": "object",
                    "required": ["content_type", "data"],
                    "properties": {
                        "content_type": {"const": "image/jpeg"},
                        "data": {"type": "string", "contentEncoding": "base64"},
                    },
                },
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
                "warnings": {"type": "array", "items": _ref("Warning")},
                "request_id": {"type": "string"},
            },
        },
        "MotionList": {
            "type": "object",
            "required": ["motions"],
            "properties": {
                "motions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "description", "framing", "duration_s"],
                        "properties": {
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "framing": {"type": "string"},
                            "duration_s": {"type": "number", "minimum": 0},
                            "fps": {"type": "number"},
                            "loops": {"type": "boolean"},
                            "default": {"type": "boolean"},
                        },
                    },
                }
            },
        },
        "ClipForm": {
            "type": "object",
            "required": ["still"],
            "properties": {
                "still": {
                    "type": "string",
                    "format": "binary",
                    "description": "the still of POST /v1/tryon (its decoded `still.data`)",
                },
                "motion": {
                    "type": "string",
                    "pattern": MOTION,
                    "description": "a motion of GET /v1/motions; default: the gateway's",
                },
            },
            "additionalProperties": False,
        },
        "ClipStarted": {
            "type": "object",
            "required": ["id", "events_url", "status_url", "video_url", "poster_url"],
            "properties": {
                "id": {"type": "string", "pattern": CLIP_ID},
                "events_url": {"type": "string"},
                "status_url": {"type": "string"},
                "video_url": {"type": "string"},
                "poster_url": {"type": "string"},
            },
        },
        "ClipStatus": {
            "type": "object",
            "required": ["id", "state", "progress", "stage", "warnings", "error"],
            "properties": {
                "id": {"type": "string"},
                "state": {
                    "enum": ["UNSPECIFIED", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
                },
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "stage": {"type": "string"},
                "warnings": {"type": "array", "items": _ref("Warning")},
                "error": {"oneOf": [_ref("Problem"), {"type": "null"}]},
            },
        },
        "ClipEvent": {
            "type": "object",
            "description": "one Server-Sent Event (OpenAPI 3.1: the schema describes each "
            "event). progress: {progress, stage, state}; done: {video_url, poster_url, "
            "warnings}; error: a Problem",
            "required": ["event", "data"],
            "properties": {
                "event": {"enum": ["progress", "done", "error"]},
                "data": {"type": "string", "contentMediaType": "application/json"},
            },
        },
        "Assignment": {
            "type": "object",
            "required": ["experiment", "unit", "variant"],
            "properties": {
                "experiment": {"type": "string"},
                "unit": {"type": "string"},
                "variant": {"type": "string"},
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
    }


def openapi_document(settings: Any) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a gateway with these settings (the bearer scheme is
    declared when DRAPE_AUTH_TOKENS_FILE turns tokens on)."""
    auth = bool(settings.auth_tokens_file)
    gid = _path_param("garment_id", GARMENT_ID, "a gallery garment's id")
    cid = _path_param("clip_id", CLIP_ID, "the id POST /v1/clips returned")
    not_found_garment = _problem("no gallery garment has this id (GARMENT_ID_UNKNOWN)")
    bad_garment = _problem("not 64 lowercase hex digits (GARMENT_ID_INVALID)")
    unknown_clip = _problem("unknown or expired clip, or another caller's (OPERATION_NOT_FOUND)")
    bad_clip = _problem("not a clip id (CLIP_ID_INVALID)")
    not_ready = _problem("the clip is still being made (CLIP_NOT_READY), or was cancelled")
    failed = _problem("the clip failed; the problem carries the service's reason")
    gallery_down = _problem("the gallery is not registered yet (GALLERY_UNAVAILABLE)")

    def op(*args: Any, api: bool = True, **kw: Any) -> dict[str, Any]:
        return _op(*args, api=api, auth=auth, **kw)

    paths: dict[str, Any] = {
        "/healthz": {
            "get": op(
                "healthz",
                "liveness: the gateway process answers",
                {"200": _json("alive", _ref("Status"))},
                api=False,
            )
        },
        "/readyz": {
            "get": op(
                "readyz",
                "readiness: the gRPC services behind the gateway are SERVING",
                {
                    "200": _json("ready", _ref("Status")),
                    "503": _problem("not serving (UPSTREAM_NOT_SERVING)"),
                },
                api=False,
            )
        },
        "/openapi.json": {
            "get": op(
                "openapi",
                "this document",
                {"200": _json("OpenAPI 3.1", {"type": "object"})},
                api=False,
            )
        },
        "/demo": {
            "get": op(
                "demo_page",
                "the demo product page",
                {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "404": _problem("the page is not installed (PAGE_MISSING)"),
                },
                api=False,
            )
        },
        "/demo/config.json": {
            "get": op(
                "demo_config",
                "what the demo page needs to know about this gateway",
                {
                    "200": _json(
                        "settings",
                        {
                            "type": "object",
                            "required": ["auth", "default_motion", "max_upload_bytes"],
                            "properties": {
                                "auth": {"type": "boolean"},
                                "default_motion": {"type": "string"},
                                "max_upload_bytes": {"type": "integer"},
                            },
                        },
                    )
                },
                api=False,
            )
        },
        "/v1/garments": {
            "get": op(
                "list_garments",
                "the demo gallery",
                {
                    "200": {
                        **_json("the gallery", _ref("GarmentList")),
                        "links": _links(
                            ("get_garment", "get_garment_image"),
                            "garment_id",
                            "$response.body#/garments/0/id",
                        ),
                    },
                    "503": gallery_down,
                },
            )
        },
        "/v1/garments/{garment_id}": {
            "get": op(
                "get_garment",
                "one gallery garment",
                {
                    "200": _json("the garment", _ref("Garment")),
                    "400": bad_garment,
                    "404": not_found_garment,
                    "503": gallery_down,
                },
                parameters=[gid],
            )
        },
        "/v1/garments/{garment_id}/image": {
            "get": op(
                "get_garment_image",
                "a gallery garment's packshot",
                {
                    "200": {
                        "description": "PNG",
                        "content": {
                            "image/png": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "400": bad_garment,
                    "404": not_found_garment,
                    "503": gallery_down,
                },
                parameters=[gid],
            )
        },
        "/v1/tryon": {
            "post": op(
                "tryon",
                "dress the shopper's photo in a garment; returns the still (JPEG)",
                {"200": _json("the still", _ref("TryOnResult")), **_UPLOAD},
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _ref("TryOnForm"),
                            "encoding": {
                                "photo": {"contentType": "image/jpeg, image/png, image/webp"},
                                "flat_lay": {"contentType": "image/png, image/jpeg, image/webp"},
                            },
                        }
                    },
                },
            )
        },
        "/v1/motions": {
            "get": op(
                "list_motions",
                "the motions a clip can follow",
                {"200": _json("motions", _ref("MotionList"))},
            )
        },
        "/v1/clips": {
            "post": op(
                "start_clip",
                "start a clip of a still; follow it at events_url",
                {
                    "202": {
                        **_json("accepted", _ref("ClipStarted")),
                        "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
                        "links": _links(
                            ("get_clip", "clip_events", "get_clip_video", "get_clip_poster"),
                            "clip_id",
                            "$response.body#/id",
                        ),
                    },
                    **_UPLOAD,
                },
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _ref("ClipForm"),
                            "encoding": {"still": {"contentType": "image/jpeg, image/png"}},
                        }
                    },
                },
            )
        },
        "/v1/clips/{clip_id}": {
            "get": op(
                "get_clip",
                "a clip's state and progress",
                {"200": _json("state", _ref("ClipStatus")), "400": bad_clip, "404": unknown_clip},
                parameters=[cid],
            )
        },
        "/v1/clips/{clip_id}/events": {
            "get": op(
                "clip_events",
                "progress as Server-Sent Events: `progress` events, then one `done` or "
                "`error` event (data: a Problem); `: ping` comments keep the stream open",
                {
                    "200": {
                        "description": "the events; each event's data is a JSON object",
                        "content": {"text/event-stream": {"schema": _ref("ClipEvent")}},
                    },
                    "400": bad_clip,
                    "404": unknown_clip,
                },
                parameters=[cid],
            )
        },
        "/v1/clips/{clip_id}/video": {
            "get": op(
                "get_clip_video",
                "the clip, MP4/H.264; honours one byte range",
                {
                    "200": {
                        "description": "the whole clip",
                        "content": {
                            "video/mp4": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "206": {
                        "description": "the range asked for",
                        "headers": {
                            "Content-Range": {"schema": {"type": "string"}, "required": True}
                        },
                        "content": {
                            "video/mp4": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "400": bad_clip,
                    "404": unknown_clip,
                    "409": not_ready,
                    "416": _problem("the range lies beyond the clip (RANGE_NOT_SATISFIABLE)"),
                    "422": failed,
                },
                parameters=[
                    cid,
                    {
                        "name": "Range",
                        "in": "header",
                        "required": False,
                        "description": "one range, bytes=FIRST-LAST, FIRST- or -SUFFIX; a "
                        "malformed or multiple range is ignored (the whole clip is sent)",
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
        "/v1/clips/{clip_id}/poster": {
            "get": op(
                "get_clip_poster",
                "the clip's poster frame (JPEG)",
                {
                    "200": {
                        "description": "JPEG",
                        "content": {
                            "image/jpeg": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "400": bad_clip,
                    "404": unknown_clip,
                    "409": not_ready,
                    "422": failed,
                },
                parameters=[cid],
            )
        },
        "/v1/experiments/{name}/assignment": {
            "get": op(
                "get_assignment",
                "the variant of a unit (shopper or session id) in an experiment",
                {
                    "200": _json("the assignment", _ref("Assignment")),
                    "400": _problem("a malformed name or unit (INVALID_EXPERIMENT_TAG, ...)"),
                    "404": _problem(
                        "unknown experiment (EXPERIMENT_NOT_FOUND), or no experiment service "
                        "(EXPERIMENTS_NOT_CONFIGURED)"
                    ),
                    "422": _problem("the experiment is not running (EXPERIMENT_NOT_RUNNING)"),
                },
                parameters=[
                    _path_param("name", EXPERIMENT_ID, "the experiment id"),
                    {
                        "name": "unit",
                        "in": "query",
                        "required": True,
                        "description": "a pseudonymous shopper or session id",
                        "schema": {"type": "string", "pattern": UNIT},
                    },
                ],
            )
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Drape storefront gateway",
            "version": "1",
            "description": "HTTP/JSON over Drape's gRPC try-on, animate and experiment "
            "services. Errors are RFC 9457 problems whose `reason` is the service's.",
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
