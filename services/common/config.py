"""Typed configuration from environment variables and an optional TOML file.

The dataclass *is* the config: each field declares its type, default, environment variable,
help text and bounds. :func:`load_settings` reads the file named by ``DRAPE_CONFIG_FILE``
(if any), then the environment (which wins), converts and validates every value, and raises
:class:`ConfigError` naming the setting on the first bad one. Services add their own
settings by subclassing :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from services.common.errors import ConfigError

MiB = 1024 * 1024
CONFIG_FILE_ENV = "DRAPE_CONFIG_FILE"
# DRAPE_* variables read outside the settings (not flagged as unknown).
KNOWN_ENV = frozenset({CONFIG_FILE_ENV, "DRAPE_SALIENCY_MODEL"})
_warned: set[str] = set()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def setting(
    default: Any,
    *,
    env: str,
    help: str,
    secret: bool = False,
    min: float | None = None,
    max: float | None = None,
) -> Any:
    """Declare one setting (a dataclass field with its metadata).

    Args:
        default: value when neither the file nor the environment sets it.
        env: the environment variable, ``DRAPE_...``.
        help: one line for the README table and ``drape config``.
        secret: redact the value whenever settings are printed.
        min: inclusive lower bound for numbers.
        max: inclusive upper bound for numbers.
    """
    meta = {"env": env, "help": help, "secret": secret, "min": min, "max": max}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings every Drape process reads. Subclass to add a service's own."""

    grpc_address: str = setting(
        "[::]:50051", env="DRAPE_GRPC_ADDRESS", help="address the gRPC server binds"
    )
    metrics_port: int = setting(
        9464,
        env="DRAPE_METRICS_PORT",
        help="Prometheus /metrics port (0: any free port, -1: no metrics server)",
        min=-1,
        max=65535,
    )
    metrics_address: str = setting(
        "0.0.0.0", env="DRAPE_METRICS_ADDRESS", help="address the metrics server binds"
    )
    metrics_variants: tuple[str, ...] = setting(
        (),
        env="DRAPE_METRICS_VARIANTS",
        help="comma-separated experiment variants allowed as metrics label values; "
        "others are counted as 'other' (bounded cardinality)",
    )
    metrics_experiments: tuple[str, ...] = setting(
        (),
        env="DRAPE_METRICS_EXPERIMENTS",
        help="comma-separated live experiment ids allowed as the 'experiment' label of the "
        "drape_experiment_* metrics; others are counted as 'other' (bounded cardinality)",
    )
    # --- experiments (README "Experiments") ---
    experiments_file: str = setting(
        "",
        env="DRAPE_EXPERIMENTS_FILE",
        help="experiment definitions (TOML or JSON); try-on, animate and catalog requests "
        "with a unit id are assigned from it; empty: no experiments",
    )
    experiments_db: str = setting(
        "sqlite:///out/experiments.db",
        env="DRAPE_EXPERIMENTS_DB",
        help="experiment store: sqlite:///PATH (embedded) or postgresql://USER:PASSWORD@HOST:PORT/DB "
        "(the password is redacted when settings are printed)",
    )
    experiments_publish_exposures: bool = setting(
        False,
        env="DRAPE_EXPERIMENTS_PUBLISH_EXPOSURES",
        help="ExperimentService also publishes each exposure on experiment.exposure.v1 "
        "(brokers: DRAPE_KAFKA_BOOTSTRAP_SERVERS)",
    )
    max_message_bytes: int = setting(
        64 * MiB,
        env="DRAPE_MAX_MESSAGE_BYTES",
        help="largest gRPC message sent or received",
        min=1 * MiB,
        max=2**31 - 1,
    )
    max_concurrent_rpcs: int = setting(
        4,
        env="DRAPE_MAX_CONCURRENT_RPCS",
        help="calls served at once; more are refused with RESOURCE_EXHAUSTED, not queued",
        min=1,
        max=1024,
    )
    opencv_threads: int = setting(
        1,
        env="DRAPE_OPENCV_THREADS",
        help="OpenCV worker threads of a try-on process (0: OpenCV's default, one per core); "
        "calls already run side by side, so more threads per call oversubscribe the cores",
        min=0,
        max=256,
    )
    drain_delay_seconds: float = setting(
        1.0,
        env="DRAPE_DRAIN_DELAY_SECONDS",
        help="on SIGTERM, how long health reports NOT_SERVING (new work refused with "
        "UNAVAILABLE) before the server stops, so load balancers notice",
        min=0,
        max=300,
    )
    max_watch_streams: int = setting(
        16,
        env="DRAPE_MAX_WATCH_STREAMS",
        help="progress streams (Watch* calls) open at once; more are refused with "
        "RESOURCE_EXHAUSTED",
        min=1,
        max=1024,
    )
    max_inflight_bytes: int = setting(
        256 * MiB,
        env="DRAPE_MAX_INFLIGHT_BYTES",
        help="request bytes a process holds at once (admitted calls, until they end); a call "
        "that would exceed it is refused with RESOURCE_EXHAUSTED (IN_FLIGHT_BYTES_LIMIT) "
        "before its request is parsed; at least the server's message limit",
        min=MiB,
        max=2**40,
    )
    grace_period_seconds: float = setting(
        30.0,
        env="DRAPE_GRACE_PERIOD_SECONDS",
        help="on SIGTERM, how long in-flight calls may take to finish",
        min=0,
        max=3600,
    )
    max_image_bytes: int = setting(
        32 * MiB,
        env="DRAPE_MAX_IMAGE_BYTES",
        help="largest encoded image accepted",
        min=1024,
    )
    max_image_pixels: int = setting(
        50_000_000,
        env="DRAPE_MAX_IMAGE_PIXELS",
        help="largest width x height accepted (checked from the header, before decoding)",
        min=1,
    )
    max_video_bytes: int = setting(
        48 * MiB, env="DRAPE_MAX_VIDEO_BYTES", help="largest encoded video accepted", min=1024
    )
    max_video_seconds: float = setting(
        30.0, env="DRAPE_MAX_VIDEO_SECONDS", help="longest video accepted", min=0.1
    )
    max_video_frames: int = setting(
        1800, env="DRAPE_MAX_VIDEO_FRAMES", help="most frames decoded from one video", min=1
    )
    max_video_pixels: int = setting(
        3840 * 2160,
        env="DRAPE_MAX_VIDEO_PIXELS",
        help="largest video frame (width x height) accepted",
        min=1,
    )
    max_video_decoded_bytes: int = setting(
        1024 * MiB,
        env="DRAPE_MAX_VIDEO_DECODED_BYTES",
        help="most memory the decoded frames of one video may take",
        min=MiB,
    )
    operation_ttl_seconds: float = setting(
        3600.0,
        env="DRAPE_OPERATION_TTL_SECONDS",
        help="how long a finished long-running operation stays readable",
        min=1,
    )
    max_operations: int = setting(
        8,
        env="DRAPE_MAX_OPERATIONS",
        help="long-running operations queued or running at once; more are refused",
        min=1,
    )
    animate_backend: str = setting(
        "skeletal", env="DRAPE_ANIMATE_BACKEND", help="animation backend of clips that name none"
    )
    animate_request_backends: tuple[str, ...] = setting(
        ("skeletal",),
        env="DRAPE_ANIMATE_REQUEST_BACKENDS",
        help="backends a clip request may name (per-request allow-list)",
    )
    animate_max_side: int = setting(
        1920, env="DRAPE_ANIMATE_MAX_SIDE", help="largest clip width or height", min=16, max=8192
    )
    animate_max_fps: float = setting(
        60.0, env="DRAPE_ANIMATE_MAX_FPS", help="highest clip frame rate", min=1, max=120
    )
    animate_max_seconds: float = setting(
        30.0, env="DRAPE_ANIMATE_MAX_SECONDS", help="longest clip", min=0.1, max=600
    )
    animate_motion_dir: str = setting(
        "",
        env="DRAPE_ANIMATE_MOTION_DIR",
        help="directory of the deployment's own motion templates (*.json); empty: built-ins only",
    )
    motion_max_seconds: float = setting(
        20.0,
        env="DRAPE_MOTION_MAX_SECONDS",
        help="longest (trimmed) reference video a motion is extracted from",
        min=0.1,
    )
    motion_max_lost_share: float = setting(
        0.5,
        env="DRAPE_MOTION_MAX_LOST_SHARE",
        help="largest share of a reference video's frames without a person that extraction "
        "bridges by interpolation",
        min=0,
        max=1,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", env="DRAPE_LOG_LEVEL", help="log level"
    )
    log_format: Literal["json", "text"] = setting(
        "json", env="DRAPE_LOG_FORMAT", help="json: one JSON object a line; text: for people"
    )
    model_dir: Path = setting(
        Path("models"),
        env="DRAPE_MODEL_DIR",
        help="model repository of operator-supplied weights (models/<name>/<version>/)",
    )
    # --- neural backends (GPU deployments; weights from DRAPE_MODEL_DIR, see README) ---
    tryon_backend: Literal["geometric", "diffusion"] = setting(
        "geometric", env="DRAPE_TRYON_BACKEND", help="try-on backend of requests that name none"
    )
    tryon_person_cache_size: int = setting(
        8,
        env="DRAPE_TRYON_PERSON_CACHE_SIZE",
        help="person analyses of recent photos kept per try-on process (a shopper tries "
        "several garments on one photo); 0: none",
        min=0,
        max=1024,
    )
    tryon_request_backends: tuple[str, ...] = setting(
        (),
        env="DRAPE_TRYON_REQUEST_BACKENDS",
        help="backends a try-on request may name besides the default (per-request "
        "allow-list, e.g. geometric,diffusion); each is loaded at start-up",
    )
    tryon_diffusion_model: str = setting(
        "catvton/1",
        env="DRAPE_TRYON_DIFFUSION_MODEL",
        help="name/version in DRAPE_MODEL_DIR of the try-on diffusion model (CatVTON layout)",
    )
    tryon_diffusion_height: int = setting(
        1024,
        env="DRAPE_TRYON_DIFFUSION_HEIGHT",
        help="working height of the try-on diffusion network (pixels)",
        min=16,
        max=4096,
    )
    tryon_diffusion_width: int = setting(
        768,
        env="DRAPE_TRYON_DIFFUSION_WIDTH",
        help="working width of the try-on diffusion network (pixels)",
        min=16,
        max=4096,
    )
    diffusion_steps: int = setting(
        30, env="DRAPE_DIFFUSION_STEPS", help="default denoising steps", min=1, max=1000
    )
    diffusion_max_steps: int = setting(
        100,
        env="DRAPE_DIFFUSION_MAX_STEPS",
        help="most denoising steps a request may ask for",
        min=1,
        max=1000,
    )
    diffusion_guidance: float = setting(
        2.5,
        env="DRAPE_DIFFUSION_GUIDANCE",
        help="default classifier-free guidance scale",
        min=0,
        max=30,
    )
    refiner_backend: Literal["classical", "diffusion"] = setting(
        "classical", env="DRAPE_REFINER_BACKEND", help="refiner backend of requests that name none"
    )
    refiner_request_backends: tuple[str, ...] = setting(
        (),
        env="DRAPE_REFINER_REQUEST_BACKENDS",
        help="backends a refine request may name besides the default (per-request allow-list)",
    )
    refiner_diffusion_model: str = setting(
        "sd-inpainting/1",
        env="DRAPE_REFINER_DIFFUSION_MODEL",
        help="name/version in DRAPE_MODEL_DIR of the refiner's SD inpainting model",
    )
    refiner_diffusion_strength: float = setting(
        0.3,
        env="DRAPE_REFINER_DIFFUSION_STRENGTH",
        help="denoising strength of the diffusion refiner at request strength 1 (low: seams "
        "are repaired, the garment is not redrawn)",
        min=0.01,
        max=1,
    )
    refiner_diffusion_steps: int = setting(
        20,
        env="DRAPE_REFINER_DIFFUSION_STEPS",
        help="diffusion refiner's schedule length (it runs strength x steps of them)",
        min=1,
        max=1000,
    )
    animate_diffusion_model: str = setting(
        "animate-anyone/1",
        env="DRAPE_ANIMATE_DIFFUSION_MODEL",
        help="name/version in DRAPE_MODEL_DIR of the animation model (AnimateAnyone layout)",
    )
    neural_device: Literal["auto", "cpu", "cuda"] = setting(
        "auto", env="DRAPE_NEURAL_DEVICE", help="device of the neural backends (auto: cuda if seen)"
    )
    neural_dtype: Literal["auto", "float32", "float16", "bfloat16"] = setting(
        "auto",
        env="DRAPE_NEURAL_DTYPE",
        help="precision of the neural backends (auto: float16 on cuda, float32 on cpu)",
    )
    garment_segmenter: Literal["classical", "sam"] = setting(
        "classical",
        env="DRAPE_GARMENT_SEGMENTER",
        help="garment cut-out: classical (the shipped U²-Net-p saliency with colour edges; no "
        "operator weights) or sam (Segment Anything prompted by the classical cut-out; needs "
        "DRAPE_GARMENT_SAM_MODEL)",
    )
    garment_sam_model: str = setting(
        "sam-vit-b/1",
        env="DRAPE_GARMENT_SAM_MODEL",
        help="name/version in DRAPE_MODEL_DIR of the SAM checkpoint (kind garment-sam)",
    )
    garment_cache_size: int = setting(
        64,
        env="DRAPE_GARMENT_CACHE_SIZE",
        help="registered garment analyses kept in process (LRU; a few MB each: the cut-out "
        "and its mask)",
        min=1,
        max=100_000,
    )
    garment_store: str = setting(
        "",
        env="DRAPE_GARMENT_STORE",
        help="store shared by replicas for registered garment analyses: file://PATH or "
        "s3://BUCKET/PREFIX (S3 through DRAPE_CATALOG_S3_*); empty: in process only",
    )
    operation_store: str = setting(
        "",
        env="DRAPE_OPERATION_STORE",
        help="store shared by replicas for long-running operations (state, progress, "
        "results), so Watch/Get/Cancel work on any replica: file://PATH on a shared volume or "
        "s3://BUCKET/PREFIX (S3 through DRAPE_CATALOG_S3_*); empty: in process only",
    )
    neural_runtime: Literal["torch", "onnxruntime"] = setting(
        "torch",
        env="DRAPE_NEURAL_RUNTIME",
        help="what runs the UNet and VAE decoder: eager torch, or the exported ONNX graphs "
        "(DIR/onnx/, `drape models export`) on ONNX Runtime",
    )
    ort_providers: tuple[str, ...] = setting(
        ("cpu",),
        env="DRAPE_ORT_PROVIDERS",
        help="ONNX Runtime execution providers in order of preference: tensorrt, cuda, cpu",
    )
    kafka_bootstrap_servers: str = setting(
        "127.0.0.1:9092",
        env="DRAPE_KAFKA_BOOTSTRAP_SERVERS",
        help="comma-separated Kafka brokers",
    )
    kafka_sasl_username: str = setting(
        "", env="DRAPE_KAFKA_SASL_USERNAME", help="SASL/PLAIN user; empty: no authentication"
    )
    kafka_sasl_password: str = setting(
        "", env="DRAPE_KAFKA_SASL_PASSWORD", help="SASL password", secret=True
    )
    # --- transport security (README "Security") ---
    kafka_security_protocol: Literal["auto", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        setting(
            "auto",
            env="DRAPE_KAFKA_SECURITY_PROTOCOL",
            help="Kafka transport; auto: SASL_SSL with a username and DRAPE_KAFKA_SSL_CA_FILE, "
            "SASL_PLAINTEXT with a username only, SSL with a CA file only, else PLAINTEXT",
        )
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = setting(
        "PLAIN", env="DRAPE_KAFKA_SASL_MECHANISM", help="SASL mechanism of the Kafka login"
    )
    kafka_ssl_ca_file: str = setting(
        "",
        env="DRAPE_KAFKA_SSL_CA_FILE",
        help="CA bundle (PEM) the brokers' certificates must chain to; empty: system roots",
    )
    kafka_ssl_cert_file: str = setting(
        "", env="DRAPE_KAFKA_SSL_CERT_FILE", help="client certificate (PEM) for mutual TLS"
    )
    kafka_ssl_key_file: str = setting(
        "", env="DRAPE_KAFKA_SSL_KEY_FILE", help="private key (PEM) of the client certificate"
    )
    kafka_ssl_check_hostname: bool = setting(
        True,
        env="DRAPE_KAFKA_SSL_CHECK_HOSTNAME",
        help="check that a broker's certificate names the host connected to",
    )
    tls_cert_file: str = setting(
        "",
        env="DRAPE_TLS_CERT_FILE",
        help="gRPC server certificate chain (PEM); set: TLS on (re-read when it changes)",
    )
    tls_key_file: str = setting(
        "", env="DRAPE_TLS_KEY_FILE", help="private key (PEM) of DRAPE_TLS_CERT_FILE"
    )
    tls_client_ca_file: str = setting(
        "",
        env="DRAPE_TLS_CLIENT_CA_FILE",
        help="CA bundle (PEM) client certificates must chain to; set: mTLS, every client "
        "must present a certificate",
    )
    auth_tokens_file: str = setting(
        "",
        env="DRAPE_AUTH_TOKENS_FILE",
        help="file of name:token lines; set: every call but health needs 'authorization: "
        "Bearer <token>' (re-read when it changes)",
    )
    health_port: int = setting(
        -1,
        env="DRAPE_HEALTH_PORT",
        help="extra plaintext port answering only grpc.health.v1 Check, for probes that "
        "cannot speak TLS (Kubernetes gRPC probes) when DRAPE_TLS_CERT_FILE is set; -1: none, "
        "0: any free",
        min=-1,
        max=65535,
    )
    client_tls: bool = setting(
        False,
        env="DRAPE_CLIENT_TLS",
        help="gRPC clients (CLI, catalog adapter) use TLS (on as well when a DRAPE_CLIENT_*_FILE "
        "for TLS is set)",
    )
    client_ca_file: str = setting(
        "",
        env="DRAPE_CLIENT_CA_FILE",
        help="CA bundle (PEM) a server's certificate must chain to; empty: system roots",
    )
    client_cert_file: str = setting(
        "", env="DRAPE_CLIENT_CERT_FILE", help="gRPC client certificate (PEM) for mTLS"
    )
    client_key_file: str = setting(
        "", env="DRAPE_CLIENT_KEY_FILE", help="private key (PEM) of DRAPE_CLIENT_CERT_FILE"
    )
    client_tls_server_name: str = setting(
        "",
        env="DRAPE_CLIENT_TLS_SERVER_NAME",
        help="name the server's certificate must carry when it differs from the address host",
    )
    client_token_file: str = setting(
        "",
        env="DRAPE_CLIENT_TOKEN_FILE",
        help="file holding the bearer token gRPC clients send (re-read when it changes)",
    )
    strict_env: bool = setting(
        False,
        env="DRAPE_STRICT_ENV",
        help="refuse to start when a DRAPE_* environment variable is not a known setting "
        "(otherwise a warning)",
    )
    catalog_group_id: str = setting(
        "drape-catalog-adapter",
        env="DRAPE_CATALOG_GROUP_ID",
        help="Kafka consumer group of the catalog adapters (run more processes to scale)",
    )
    catalog_asset_store: str = setting(
        "file://out/assets",
        env="DRAPE_CATALOG_ASSET_STORE",
        help="where assets are written: file://PATH (relative or absolute) or s3://BUCKET/PREFIX",
    )
    catalog_s3_endpoint: str = setting(
        "",
        env="DRAPE_CATALOG_S3_ENDPOINT",
        help="S3-compatible endpoint URL for s3:// stores and references, e.g. "
        "https://s3.eu-west-1.amazonaws.com",
    )
    catalog_s3_region: str = setting(
        "us-east-1", env="DRAPE_CATALOG_S3_REGION", help="S3 region used in request signing"
    )
    catalog_s3_access_key: str = setting(
        "",
        env="DRAPE_CATALOG_S3_ACCESS_KEY",
        help="S3 access key id; empty: botocore's default credential chain (IRSA web "
        "identity, STS roles, AWS_* environment, instance metadata)",
    )
    catalog_s3_secret_key: str = setting(
        "", env="DRAPE_CATALOG_S3_SECRET_KEY", help="S3 secret access key", secret=True
    )
    catalog_rosters_file: str = setting(
        "",
        env="DRAPE_CATALOG_ROSTERS_FILE",
        help="TOML file of stock-model rosters and merchant defaults; empty: the built-in "
        "roster (two public-domain photos)",
    )
    catalog_pipeline: Literal["embedded", "grpc"] = setting(
        "embedded",
        env="DRAPE_CATALOG_PIPELINE",
        help="embedded: try-on and refiner run in the adapter process; grpc: call TryOnService",
    )
    catalog_tryon_address: str = setting(
        "127.0.0.1:50051",
        env="DRAPE_CATALOG_TRYON_ADDRESS",
        help="TryOnService address when DRAPE_CATALOG_PIPELINE=grpc",
    )
    catalog_clip_runner: str = setting(
        "",
        env="DRAPE_CATALOG_CLIP_RUNNER",
        help="module:factory returning the clip step (in process: "
        "services.animate.catalog:make_clip_runner); empty: clip requests fail with "
        "CLIPS_UNAVAILABLE",
    )
    catalog_workers: int = setting(
        1, env="DRAPE_CATALOG_WORKERS", help="jobs run at once per adapter process", min=1, max=64
    )
    catalog_max_attempts: int = setting(
        4,
        env="DRAPE_CATALOG_MAX_ATTEMPTS",
        help="attempts of a transient failure before the event is dead-lettered",
        min=1,
        max=100,
    )
    catalog_retry_backoff_seconds: float = setting(
        0.5,
        env="DRAPE_CATALOG_RETRY_BACKOFF_SECONDS",
        help="first retry delay; doubles per attempt (with jitter), capped at 60 s",
        min=0,
        max=600,
    )
    catalog_job_timeout_seconds: float = setting(
        600.0,
        env="DRAPE_CATALOG_JOB_TIMEOUT_SECONDS",
        help="deadline of one attempt at one product (DEADLINE_EXCEEDED, retried)",
        min=1,
    )
    catalog_fetch_schemes: tuple[str, ...] = setting(
        ("https", "http", "s3"),
        env="DRAPE_CATALOG_FETCH_SCHEMES",
        help="schemes an event's image_uri may use, of https, http, s3 (file:// is "
        "DRAPE_CATALOG_FETCH_FILE_ROOT); others: GARMENT_FETCH_REFUSED",
    )
    catalog_fetch_hosts: tuple[str, ...] = setting(
        (),
        env="DRAPE_CATALOG_FETCH_HOSTS",
        help="hosts an event's http(s) image_uri may name (exact, or *.example.com for "
        "subdomains); empty: any host with a public address",
    )
    catalog_fetch_allow_networks: tuple[str, ...] = setting(
        (),
        env="DRAPE_CATALOG_FETCH_ALLOW_NETWORKS",
        help="networks (CIDR) event references may resolve to although not public, e.g. "
        "10.1.2.0/24 for an internal image server; empty: public addresses only",
    )
    catalog_fetch_file_root: str = setting(
        "",
        env="DRAPE_CATALOG_FETCH_FILE_ROOT",
        help="directory an event's file:// image_uri must lie in (no symlink out, regular "
        "files only); empty: file:// refused",
    )
    catalog_batch_db: str = setting(
        "out/catalog_batches.sqlite",
        env="DRAPE_CATALOG_BATCH_DB",
        help="SQLite file where `drape serve catalog` keeps its batches (resumed on restart)",
    )
    catalog_batch_max_products: int = setting(
        10000,
        env="DRAPE_CATALOG_BATCH_MAX_PRODUCTS",
        help="most products in one CatalogService batch (more: BATCH_TOO_LARGE); its report "
        "must fit in one DRAPE_MAX_MESSAGE_BYTES message",
        min=1,
        max=1000000,
    )
    catalog_service_address: str = setting(
        "127.0.0.1:50051",
        env="DRAPE_CATALOG_SERVICE_ADDRESS",
        help="CatalogService that `drape catalog batch` and `drape catalog status` call",
    )
    # --- storefront gateway (README "Storefront gateway") ---
    gateway_address: str = setting(
        "0.0.0.0:8080",
        env="DRAPE_GATEWAY_ADDRESS",
        help="address the HTTP/JSON gateway (`drape serve gateway`) binds",
    )
    gateway_upstream: str = setting(
        "127.0.0.1:50051",
        env="DRAPE_GATEWAY_UPSTREAM",
        help="gRPC server the gateway calls (try-on, animate and, when hosted, experiments); "
        "client TLS from DRAPE_CLIENT_*",
    )
    gateway_cors_origins: tuple[str, ...] = setting(
        (),
        env="DRAPE_GATEWAY_CORS_ORIGINS",
        help="comma-separated origins (scheme://host[:port]) whose pages may call the gateway "
        "from a browser, e.g. https://shop.example.com; empty: same origin only",
    )
    gateway_max_upload_bytes: int = setting(
        16 * MiB,
        env="DRAPE_GATEWAY_MAX_UPLOAD_BYTES",
        help="largest request body the gateway reads (a whole multipart form); larger is "
        "refused with 413 REQUEST_TOO_LARGE before or while it is read",
        min=1024,
        max=1024 * MiB,
    )
    gateway_max_concurrent_calls: int = setting(
        16,
        env="DRAPE_GATEWAY_MAX_CONCURRENT_CALLS",
        help="gRPC calls the gateway has in flight at once (one thread each); more are "
        "refused with 429 CONCURRENCY_LIMIT",
        min=1,
        max=1024,
    )
    gateway_max_event_streams: int = setting(
        16,
        env="DRAPE_GATEWAY_MAX_EVENT_STREAMS",
        help="clip progress streams (Server-Sent Events) open at once; more are refused "
        "with 429 CONCURRENCY_LIMIT",
        min=1,
        max=1024,
    )
    gateway_call_timeout_seconds: float = setting(
        120.0,
        env="DRAPE_GATEWAY_CALL_TIMEOUT_SECONDS",
        help="deadline of the gateway's try-on and garment calls (504 when it passes)",
        min=1,
        max=3600,
    )
    gateway_events_max_seconds: float = setting(
        600.0,
        env="DRAPE_GATEWAY_EVENTS_MAX_SECONDS",
        help="longest a clip progress stream stays open; it then ends with an error event",
        min=1,
        max=3600,
    )
    gateway_clip_motion: str = setting(
        "idle-sway-upper",
        env="DRAPE_GATEWAY_CLIP_MOTION",
        help="motion of a clip request that names none (see GET /v1/motions)",
    )
    gateway_clip_fps: float = setting(
        15.0, env="DRAPE_GATEWAY_CLIP_FPS", help="frame rate of the gateway's clips", min=1, max=60
    )
    gateway_clip_max_side: int = setting(
        720,
        env="DRAPE_GATEWAY_CLIP_MAX_SIDE",
        help="longest side of the gateway's clips in pixels (the still's aspect ratio is kept)",
        min=16,
        max=4096,
    )
    gateway_clip_seconds: float = setting(
        0.0,
        env="DRAPE_GATEWAY_CLIP_SECONDS",
        help="length of the gateway's clips; 0: one pass of the motion",
        min=0,
        max=60,
    )

    def __post_init__(self) -> None:
        check_address("DRAPE_GRPC_ADDRESS", self.grpc_address)
        check_address("DRAPE_GATEWAY_ADDRESS", self.gateway_address)
        check_address("DRAPE_GATEWAY_UPSTREAM", self.gateway_upstream)
        for origin in self.gateway_cors_origins:
            if origin != "*" and not _ORIGIN_RE.fullmatch(origin):
                raise ConfigError(
                    "DRAPE_GATEWAY_CORS_ORIGINS",
                    f"invalid origin {origin[:80]!r}: expected scheme://host[:port] with no "
                    "path or trailing slash, e.g. https://shop.example.com (or *)",
                )
        if self.max_image_bytes > self.max_message_bytes:
            raise ConfigError(
                "DRAPE_MAX_IMAGE_BYTES",
                f"{self.max_image_bytes} exceeds DRAPE_MAX_MESSAGE_BYTES="
                f"{self.max_message_bytes}; such images could never arrive",
            )
        if self.max_video_bytes > self.max_message_bytes:
            raise ConfigError(
                "DRAPE_MAX_VIDEO_BYTES",
                f"{self.max_video_bytes} exceeds DRAPE_MAX_MESSAGE_BYTES="
                f"{self.max_message_bytes}; such videos could never arrive",
            )
        if self.kafka_sasl_username and not self.kafka_sasl_password:
            raise ConfigError("DRAPE_KAFKA_SASL_PASSWORD", "required when a username is set")
        _check_security(self)
        if not self.catalog_asset_store.startswith(("file://", "s3://")):
            raise ConfigError(
                "DRAPE_CATALOG_ASSET_STORE",
                f"invalid value {self.catalog_asset_store!r}: expected file://PATH or "
                "s3://BUCKET/PREFIX",
            )
        if self.catalog_asset_store.startswith("s3://") and not self.catalog_s3_endpoint:
            raise ConfigError("DRAPE_CATALOG_S3_ENDPOINT", "required for an s3:// asset store")
        if self.garment_store and not self.garment_store.startswith(("file://", "s3://")):
            raise ConfigError(
                "DRAPE_GARMENT_STORE",
                f"invalid value {self.garment_store!r}: expected file://PATH or "
                "s3://BUCKET/PREFIX (or empty)",
            )
        if self.garment_store.startswith("s3://") and not self.catalog_s3_endpoint:
            raise ConfigError("DRAPE_CATALOG_S3_ENDPOINT", "required for an s3:// garment store")
        if self.operation_store and not self.operation_store.startswith(("file://", "s3://")):
            raise ConfigError(
                "DRAPE_OPERATION_STORE",
                f"invalid value {self.operation_store[:80]!r}: expected file://PATH or "
                "s3://BUCKET/PREFIX (or empty)",
            )
        if self.operation_store.startswith("s3://") and not self.catalog_s3_endpoint:
            raise ConfigError("DRAPE_CATALOG_S3_ENDPOINT", "required for an s3:// operation store")
        if self.catalog_pipeline == "grpc":
            check_address("DRAPE_CATALOG_TRYON_ADDRESS", self.catalog_tryon_address)
        bad = set(self.catalog_fetch_schemes) - {"https", "http", "s3"}
        if bad:
            raise ConfigError(
                "DRAPE_CATALOG_FETCH_SCHEMES",
                f"unknown {sorted(bad)}: use https, http, s3 (file:// is "
                "DRAPE_CATALOG_FETCH_FILE_ROOT)",
            )
        import ipaddress

        for net in self.catalog_fetch_allow_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(
                    "DRAPE_CATALOG_FETCH_ALLOW_NETWORKS", f"{net!r} is not a network (CIDR)"
                ) from None

    # ---------------------------------------------------------------- presentation

    def redacted(self) -> dict[str, str]:
        """Every setting by environment variable, secrets shown as ``***`` when set and
        credentials inside URL values redacted (:func:`redact_url`)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                out[f.metadata["env"]] = "***" if value else ""
            else:
                out[f.metadata["env"]] = redact_url(_format(value))
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """``(setting, env var, default, help)`` for each setting, for docs and ``--help``."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = "" if f.metadata.get("secret") else _format(f.default)
            rows.append(
                (
                    f.name,
                    f.metadata["env"],
                    default,
                    _type_name(hints[f.name]) + ": " + f.metadata["help"],
                )
            )
        return rows


# Query parameters whose values are credentials (presigned URLs, API keys).
_SECRET_PARAM = re.compile(r"(?i)(signature|credential|token|secret|passw|key|auth|session)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://")
# A browser origin as CORS compares it: scheme, host and optional port, nothing after.
_ORIGIN_RE = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def redact_url(text: str) -> str:
    """``text`` with the credentials of any URL in it replaced by ``***``.

    Each comma-separated item is treated as a URL (``scheme://user:pass@host/...``) or a
    broker address (``user:pass@host:port``): its user information becomes ``***`` and
    the values of credential-like query parameters (``X-Amz-Signature``, ``token``…) too.
    Over-redacting is preferred to leaking: an ``@`` later in a path redacts up to it.
    """
    if "@" not in text and "?" not in text:
        return text
    return ",".join(_redact_item(item) for item in text.split(","))


def _redact_item(item: str) -> str:
    m = _SCHEME.match(item.lstrip())
    lead = item[: len(item) - len(item.lstrip())]
    body = item.lstrip()
    scheme = m.group(0) if m else ""
    rest = body[len(scheme) :]
    query = ""
    if scheme and "?" in rest:
        rest, _, query = rest.partition("?")
        query = "&".join(
            f"{k}=***" if sep and _SECRET_PARAM.search(k) else k + sep + v
            for k, sep, v in (p.partition("=") for p in query.split("&"))
        )
        query = "?" + query
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        if scheme or ":" in userinfo:
            rest = "***@" + host
    return lead + scheme + rest + query


def _check_security(s: Settings) -> None:
    """Pairs of transport-security settings that only work together."""
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        missing = "DRAPE_TLS_KEY_FILE" if s.tls_cert_file else "DRAPE_TLS_CERT_FILE"
        raise ConfigError(missing, "TLS needs both DRAPE_TLS_CERT_FILE and DRAPE_TLS_KEY_FILE")
    if s.tls_client_ca_file and not s.tls_cert_file:
        raise ConfigError(
            "DRAPE_TLS_CLIENT_CA_FILE", "mTLS needs TLS on: set DRAPE_TLS_CERT_FILE and _KEY_FILE"
        )
    if bool(s.client_cert_file) != bool(s.client_key_file):
        missing = "DRAPE_CLIENT_KEY_FILE" if s.client_cert_file else "DRAPE_CLIENT_CERT_FILE"
        raise ConfigError(missing, "a client certificate needs both a certificate and a key")
    if bool(s.kafka_ssl_cert_file) != bool(s.kafka_ssl_key_file):
        missing = (
            "DRAPE_KAFKA_SSL_KEY_FILE" if s.kafka_ssl_cert_file else "DRAPE_KAFKA_SSL_CERT_FILE"
        )
        raise ConfigError(missing, "a Kafka client certificate needs both a certificate and a key")
    if s.kafka_security_protocol.startswith("SASL") and not s.kafka_sasl_username:
        raise ConfigError("DRAPE_KAFKA_SASL_USERNAME", f"required by {s.kafka_security_protocol}")


def unknown_env(cls: type[Settings], env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, suggestion)`` for each ``DRAPE_*`` variable that no setting reads.

    The suggestion is the closest known name (:func:`difflib.get_close_matches`), or "".
    """
    known = {f.metadata["env"] for f in dataclasses.fields(cls)} | KNOWN_ENV
    out = []
    for name in sorted(env):
        if name.startswith("DRAPE_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            out.append((name, close[0] if close else ""))
    return out


def _check_env(cls: type[Settings], env: Mapping[str, str], strict: bool) -> None:
    for name, guess in unknown_env(cls, env):
        hint = f"; did you mean {guess}?" if guess else ""
        if strict:
            raise ConfigError(name, f"unknown environment variable (DRAPE_STRICT_ENV is on){hint}")
        if name not in _warned:
            _warned.add(name)
            logging.getLogger("drape.config").warning(
                "unknown environment variable %s is ignored%s", name, hint
            )


def check_address(env: str, address: str) -> None:
    """Check a ``host:port`` (``[v6]:port`` for IPv6) with a port in 0..65535.

    Raises:
        ConfigError: naming ``env`` when the address cannot be a listening address.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            env, f"invalid address {address!r}: expected host:port with a port 0-65535"
        )
    if host.startswith("[") != host.endswith("]"):
        raise ConfigError(env, f"invalid address {address!r}: unbalanced brackets")


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "list"
    return getattr(tp, "__name__", str(tp))


def _convert(name: str, env: str, tp: Any, raw: Any, meta: Mapping[str, Any]) -> Any:
    """Convert a raw value (env string or TOML value) to ``tp`` and check its bounds."""
    origin = typing.get_origin(tp)
    try:
        if origin is Literal:
            choices = typing.get_args(tp)
            value = str(raw).strip()
            # Level names are case-insensitive; everything else is exact.
            matched = [c for c in choices if c == value or (c.isupper() and c == value.upper())]
            if not matched:
                raise ValueError(f"must be one of {', '.join(map(str, choices))}")
            return matched[0]
        if origin is tuple:
            items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
            return tuple(s.strip() for s in map(str, items) if s.strip())
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("must be true or false")
        if tp is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("must be an integer")
            value = int(str(raw).strip().replace("_", ""))
        elif tp is float:
            value = float(str(raw).strip())
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("must be a finite number")
        elif tp is Path:
            return Path(str(raw))
        elif tp is str:
            return str(raw)
        else:  # pragma: no cover - a programming error in a Settings subclass
            raise TypeError(f"unsupported setting type {tp!r}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(env, f"invalid value {raw!r}: {exc}") from None
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(env, f"invalid value {raw!r}: must be >= {lo:g}")
    if hi is not None and value > hi:
        raise ConfigError(env, f"invalid value {raw!r}: must be <= {hi:g}")
    return value


S = typing.TypeVar("S", bound=Settings)


def load_settings(
    cls: type[S] = Settings,  # type: ignore[assignment]
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> S:
    """Build validated settings.

    Precedence, lowest first: dataclass defaults, the TOML file (``config_file`` or
    ``$DRAPE_CONFIG_FILE``; keys are the setting names, e.g. ``max_concurrent_rpcs = 8``),
    the environment, then ``overrides`` (for tests and embedding).

    Raises:
        ConfigError: naming the first setting (env var) whose value is invalid, or the file
            when it cannot be read or has unknown keys.
    """
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}

    path = config_file or env.get(CONFIG_FILE_ENV)
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(CONFIG_FILE_ENV, f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(CONFIG_FILE_ENV, f"{path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(CONFIG_FILE_ENV, f"{path} has unknown settings: {', '.join(unknown)}")
        for key, raw in data.items():
            f = fields[key]
            values[key] = _convert(
                key, f"{f.metadata['env']} (in {path})", hints[key], raw, f.metadata
            )

    for name, f in fields.items():
        raw = env.get(f.metadata["env"])
        if raw is not None and raw != "":
            values[name] = _convert(name, f.metadata["env"], hints[name], raw, f.metadata)
    for name, raw in overrides.items():
        if name not in fields:
            raise ConfigError(name, "unknown setting")
        f = fields[name]
        values[name] = _convert(name, f.metadata["env"], hints[name], raw, f.metadata)
    _check_env(cls, env, bool(values.get("strict_env", False)))
    return cls(**values)
