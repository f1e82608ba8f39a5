"""Catalog adapter parts without Kafka: content hashes, the atomic asset store, event
validation, rosters, request signing for S3, the idempotent job on the real embedded
try-on, the gRPC still step against a real TryOnService, and the events file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drape.catalog.v1 import events_pb2 as ev_pb
from services.catalog_adapter.jobs import JobRunner, content_hash, validate_event
from services.catalog_adapter.publish import (
    draw_sample_garment,
    read_events,
    sample_event,
    write_samples,
)
from services.catalog_adapter.roster import Rosters, builtin_photos, load_rosters, make_model
from services.catalog_adapter.runners import (
    EmbeddedStillRunner,
    GarmentSpec,
    GrpcStillRunner,
    NoClipRunner,
    ReferenceReader,
    is_retryable,
)
from services.catalog_adapter.s3 import EMPTY_SHA256, sign
from services.catalog_adapter.store import FileStore, open_store
from services.common.config import load_settings
from services.common.context import CancelToken
from services.common.errors import (
    ConfigError,
    FailedPreconditionError,
    InvalidInputError,
    UnavailableError,
)
from services.common.images import ImageLimits, encode_image


def test_content_hash_changes_with_every_input_and_parts_never_run_together():
    base = ("still", "abc", "top", "model-sha", "v1", "PNG")
    h = content_hash(*base)
    assert h == content_hash(*base) and len(h) == 64
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + "x"
        assert content_hash(*changed) != h
    assert content_hash("ab", "c") != content_hash("a", "bc")  # length-prefixed parts


def test_file_store_writes_atomically_and_lists_only_complete_files(tmp_path):
    store = FileStore(tmp_path / "s")
    store.put("acme/SKU-1/m/a.png", b"first")
    store.put("acme/SKU-1/m/a.png", b"second")  # replaced whole
    assert store.get("acme/SKU-1/m/a.png") == b"second"
    assert store.get("acme/SKU-1/m/missing.png") is None
    # What a crash mid-write leaves behind: a temporary name, never listed nor readable as
    # the asset.
    (tmp_path / "s/acme/SKU-1/m/.tmp-b.png.1234").write_bytes(b"half")
    assert store.list() == ["acme/SKU-1/m/a.png"]
    assert store.list("acme/SKU-1") == ["acme/SKU-1/m/a.png"]
    assert not [p for p in (tmp_path / "s").rglob("*a.png.*")]  # no temp left by put
    assert store.uri("acme/SKU-1/m/a.png") == (tmp_path / "s/acme/SKU-1/m/a.png").as_uri()
    for bad in ("../x", "a/../../x", "", "a//b", ".tmp-x"):
        with pytest.raises(ValueError):
            store.put(bad, b"x")
    os.chmod(tmp_path / "s/acme", 0o500)
    try:
        if os.geteuid() != 0:  # root ignores permissions
            with pytest.raises(UnavailableError) as ei:
                store.put("acme/SKU-2/m/a.png", b"x")
            assert ei.value.reason == "ASSET_STORE_FAILED" and is_retryable(ei.value)
    finally:
        os.chmod(tmp_path / "s/acme", 0o700)
    rel = open_store("file://" + str(tmp_path / "t"))
    assert isinstance(rel, FileStore) and rel.root == (tmp_path / "t")
    with pytest.raises(ValueError, match="DRAPE_CATALOG_S3_ENDPOINT"):
        open_store("s3://bucket/prefix", load_settings(env={}))


def test_settings_refuse_an_unknown_store_and_s3_without_endpoint():
    with pytest.raises(ConfigError) as ei:
        load_settings(env={"DRAPE_CATALOG_ASSET_STORE": "/srv/assets"})
    assert ei.value.setting == "DRAPE_CATALOG_ASSET_STORE"
    with pytest.raises(ConfigError) as ei:
        load_settings(env={"DRAPE_CATALOG_ASSET_STORE": "s3://b/p"})
    assert ei.value.setting == "DRAPE_CATALOG_S3_ENDPOINT"
    with pytest.raises(ConfigError) as ei:
        load_settings(env={"DRAPE_CATALOG_PIPELINE": "grpc", "DRAPE_CATALOG_TRYON_ADDRESS": "x"})
    assert ei.value.setting == "DRAPE_CATALOG_TRYON_ADDRESS"


def test_validate_event_names_every_bad_field():
    validate_event(sample_event(1, "file:///x.png"))
    ev = ev_pb.ProductUpserted(merchant_id="acme", sku="../etc")
    ev.garments.add(image_uri="ftp://x/y.png")
    ev.experiment.variant = "Has Spaces"
    with pytest.raises(InvalidInputError) as ei:
        validate_event(ev)
    fields = ei.value.metadata["fields"].split(",")
    assert ei.value.reason == "INVALID_EVENT" and ei.value.field == "event_id"
    assert fields == [
        "event_id", "sku", "garments[0].image_uri", "deliverables", "experiment.variant"
    ]  # fmt: skip
    assert not is_retryable(ei.value)


def test_product_types_map_onto_hints_and_bad_hints_make_the_event_invalid():
    from drape.tryon.v1 import tryon_service_pb2 as tpb
    from services.catalog_adapter.product_types import PRODUCT_TYPES, hint_enums, normalise
    from services.tryon import hints as H

    ref = ev_pb.GarmentRef
    assert normalise("  Long-Sleeve_T/Shirt ") == "long sleeve t shirt"
    assert hint_enums(ref(product_type="T-Shirt")) == (
        tpb.GARMENT_CATEGORY_TOP, tpb.SLEEVE_LENGTH_SHORT, 0,
    )  # fmt: skip
    assert hint_enums(ref(product_type="Maxi Dress")) == (
        tpb.GARMENT_CATEGORY_DRESS, 0, tpb.GARMENT_LENGTH_FLOOR,
    )  # fmt: skip
    # The event's own hints win; a category of another kind drops the type's sleeve/length.
    assert hint_enums(ref(product_type="jeans", length=tpb.GARMENT_LENGTH_KNEE))[2] == (
        tpb.GARMENT_LENGTH_KNEE
    )
    assert hint_enums(ref(product_type="t-shirt", category=tpb.GARMENT_CATEGORY_DRESS)) == (
        tpb.GARMENT_CATEGORY_DRESS, 0, 0,
    )  # fmt: skip
    assert hint_enums(ref(product_type="spacesuit")) == (0, 0, 0)
    for name, enums in PRODUCT_TYPES.items():  # every entry is a valid set of hints
        assert normalise(name) == name
        H.hints_from_proto(*enums)

    ev = sample_event(1, "file:///x.png")
    ev.garments[0].product_type = "midi skirt"
    validate_event(ev)
    ev.garments.add(image_uri="file:///y.png", sleeve=9)
    ev.garments.add(image_uri="file:///z.png", length=tpb.GARMENT_LENGTH_KNEE)
    ev.garments[0].category = 77
    with pytest.raises(InvalidInputError) as ei:
        validate_event(ev)
    assert ei.value.metadata["fields"].split(",") == [
        "garments", "garments[0].category", "garments[1].sleeve", "garments[2].length",
    ]  # fmt: skip


def test_sigv4_matches_the_published_s3_example():
    # "GET Object" example of the Amazon S3 API reference (Signature Version 4, header
    # authentication): documented credentials, date and expected signature.
    auth = sign(
        "GET",
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        {},
        {"Range": "bytes=0-9", "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": "20130524T000000Z"},
        EMPTY_SHA256,
        "20130524T000000Z",
        "us-east-1",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )  # fmt: skip
    assert auth == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def _small(rgb: np.ndarray, side: int = 256) -> np.ndarray:
    import cv2

    s = side / max(rgb.shape[:2])
    size = (round(rgb.shape[1] * s), round(rgb.shape[0] * s))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def test_rosters_file_and_its_errors(tmp_path):
    reader = ReferenceReader(1 << 24)
    photo = tmp_path / "astro.png"
    Image.fromarray(_small(builtin_photos()["astronaut"])).save(photo)
    good = tmp_path / "r.toml"
    good.write_text(
        f'[rosters.a]\nmodels = [{{ id = "ava", image = "{photo.as_uri()}" }}]\n'
        '[merchants.acme]\ndefault_roster = "a"\n'
    )
    r = load_rosters(str(good), reader)
    assert r.default_roster == "a" and r.resolve("acme", "")[0] == "a"
    assert (
        r.resolve("other", "")[1][0].id == "ava" and r.resolve("x", "a")[1][0].rgb.shape[0] == 256
    )
    with pytest.raises(InvalidInputError) as ei:
        r.resolve("acme", "nope")
    assert ei.value.reason == "ROSTER_NOT_FOUND" and not is_retryable(ei.value)
    cases = {
        "missing image": f'[rosters.a]\nmodels = [{{ id = "ava", image = "{(tmp_path / "no.png").as_uri()}" }}]\n',  # noqa: E501
        "duplicate model id": f'[rosters.a]\nmodels = [{{ id = "ava", image = "{photo.as_uri()}" }}, {{ id = "ava", image = "{photo.as_uri()}" }}]\n',  # noqa: E501
        "is not defined": f'default_roster = "b"\n[rosters.a]\nmodels = [{{ id = "ava", image = "{photo.as_uri()}" }}]\n',  # noqa: E501
        "has no models": "[rosters.a]\nmodels = []\n",
        "unknown keys": "colour = 1\n",
    }
    for words, text in cases.items():
        good.write_text(text)
        with pytest.raises(ConfigError) as ei:
            load_rosters(str(good), reader)
        assert ei.value.setting == "DRAPE_CATALOG_ROSTERS_FILE"
        assert words in str(ei.value) or "cannot read" in str(ei.value), (words, str(ei.value))


@pytest.fixture(scope="module")
def embedded():
    runner = EmbeddedStillRunner(ImageLimits())
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def small_models():
    return tuple(make_model(k, _small(v)) for k, v in builtin_photos().items())


def test_job_reuses_existing_assets_and_reports_clips_unavailable(tmp_path, embedded, small_models):
    garment = tmp_path / "tee.png"
    Image.fromarray(draw_sample_garment(0, 256)).save(garment)
    store = FileStore(tmp_path / "store")
    jobs = JobRunner(
        store, Rosters({"r": small_models}, "r"), embedded, NoClipRunner(), ReferenceReader(1 << 24)
    )
    embedded.warm(list(small_models))
    hits = embedded.analyzer.hits
    ev = sample_event(1, garment.as_uri())
    first = jobs.attempt(ev, CancelToken())
    assert not first.failures and first.created == 2
    assert embedded.analyzer.hits == hits + 2  # roster photos analysed once, at warm-up
    assert [a.model_id for a in first.ready] == ["astronaut", "grace-hopper"]
    assert not any(a.reused for a in first.ready)
    keys = store.list()
    mtimes = {k: (store.root / k).stat().st_mtime_ns for k in keys}
    assert len([k for k in keys if k.endswith(".png")]) == 2

    ev2 = sample_event(1, garment.as_uri(), prefix="again")  # same inputs, new event
    second = jobs.attempt(ev2, CancelToken())
    assert second.created == 0 and all(a.reused for a in second.ready)
    assert [a.content_hash for a in second.ready] == [a.content_hash for a in first.ready]
    assert [a.created_at for a in second.ready] == [a.created_at for a in first.ready]
    assert {a.event_id for a in second.ready} == {"again-0001"}
    assert {k: (store.root / k).stat().st_mtime_ns for k in store.list()} == mtimes

    forced = jobs.attempt(ev2, CancelToken(), force=True)
    assert forced.created == 2

    clip = sample_event(1, garment.as_uri(), prefix="clip", clips=True)
    res = jobs.attempt(clip, CancelToken())
    assert [(m, k) for m, k, _ in res.failures] == [
        ("astronaut", ev_pb.ASSET_KIND_CLIP), ("grace-hopper", ev_pb.ASSET_KIND_CLIP),
    ]  # fmt: skip
    err = res.failures[0][2]
    assert isinstance(err, FailedPreconditionError) and err.reason == "CLIPS_UNAVAILABLE"
    assert not is_retryable(err) and res.created == 0 and len(res.ready) == 2  # stills reused

    blank = tmp_path / "blank.png"
    Image.new("RGB", (256, 256), (255, 255, 255)).save(blank)
    res = jobs.attempt(sample_event(2, blank.as_uri()), CancelToken())
    assert [(m, e.reason) for m, _, e in res.failures] == [("", "GARMENT_NOT_FOUND")]

    res = jobs.attempt(sample_event(3, (tmp_path / "gone.png").as_uri()), CancelToken())
    assert [(m, e.reason) for m, _, e in res.failures] == [("", "GARMENT_FETCH_FAILED")]


def test_job_registers_the_garment_once_for_every_roster_model(
    tmp_path, embedded, small_models, monkeypatch
):
    from services.common.analysis import garment as G
    from services.tryon.flatlays import draw_garment
    from services.tryon.registry import Hints

    garment = tmp_path / "tank.png"
    Image.fromarray(draw_garment("tank", color=(40, 160, 90), size=(256, 256)).image).save(garment)
    analyses = []
    real = G.analyze_garment

    def counting(*a, **kw):
        analyses.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(G, "analyze_garment", counting)
    models = small_models * 2  # four stock models
    models = tuple(make_model(f"m{i}", m.rgb) for i, m in enumerate(models))
    jobs = JobRunner(
        FileStore(tmp_path / "store"), Rosters({"r": models}, "r"), embedded, NoClipRunner(),
        ReferenceReader(1 << 24),
    )  # fmt: skip
    ev = sample_event(7, garment.as_uri())
    ev.garments[0].product_type = "Tank Top"
    before = embedded.registrations
    res = jobs.attempt(ev, CancelToken())
    assert not res.failures and res.created == 4
    assert len(analyses) == 1 and embedded.registrations == before + 1
    assert analyses[0] == {"sleeve": "sleeveless", "length": None}  # from the product type
    gid = embedded.registry.id_for(garment.read_bytes(), Hints("top", "sleeveless", None))
    assert embedded.registry.get(gid).category_source == "request"
    # A new event for the same garment: its analysis is found by content hash.
    again = jobs.attempt(sample_event(7, garment.as_uri(), prefix="again"), CancelToken(),
                         force=True)  # fmt: skip
    assert again.created == 4 and len(analyses) == 2  # no product type: other hints, new id
    forced = jobs.attempt(ev, CancelToken(), force=True)
    assert forced.created == 4 and len(analyses) == 2  # same bytes and hints: none


def test_revisions_mark_older_events_stale(tmp_path, embedded, small_models):
    store = FileStore(tmp_path / "store")
    jobs = JobRunner(store, Rosters({"r": small_models}, "r"), embedded, NoClipRunner(), None)
    ev = sample_event(1, "file:///x.png")
    ev.revision = 3
    assert not jobs.is_stale(ev)
    jobs.record_revision(ev)
    older, same, unversioned = (sample_event(1, "file:///x.png") for _ in range(3))
    older.revision, same.revision, unversioned.revision = 2, 3, 0
    assert jobs.is_stale(older) and not jobs.is_stale(same) and not jobs.is_stale(unversioned)


def test_grpc_still_step_against_a_real_tryon_service(small_models):
    import io

    from services.common.server import create_server
    from services.tryon.server import TryOnApp

    settings = load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0")
    server, port = create_server("127.0.0.1:0", TryOnApp(settings), settings=settings)
    server.start()
    runner = GrpcStillRunner(f"127.0.0.1:{port}", timeout=60)
    try:
        assert server.wait_ready(120), server.load_error
        runner.warm(list(small_models))
        tee = encode_image(draw_sample_garment(0, 256), "PNG")
        asset = runner.make_still(small_models[0], [GarmentSpec(tee)], "JPEG", CancelToken())
        img = Image.open(io.BytesIO(asset.data))
        assert img.format == "JPEG" and img.size == (asset.width, asset.height) == (256, 256)
        # Registered once, then tried on by id; an id the replica does not know falls back
        # to the flat-lay.
        spec = runner.register(GarmentSpec(tee, "top", "short"), "garments[0]", CancelToken())
        assert len(spec.garment_id) == 64
        by_id = runner.make_still(small_models[0], [spec], "JPEG", CancelToken())
        assert Image.open(io.BytesIO(by_id.data)).size == (256, 256)
        lost = GarmentSpec(tee, garment_id="0" * 64)
        assert runner.make_still(small_models[0], [lost], "PNG", CancelToken()).width == 256
        with pytest.raises(InvalidInputError) as ei:
            runner.register(GarmentSpec(b"junk"), "garments[1]", CancelToken())
        assert ei.value.reason == "IMAGE_UNRECOGNIZED"
        assert ei.value.field.startswith("garments[1].image_uri")
        blank = encode_image(np.full((256, 256, 3), 255, np.uint8), "PNG")
        with pytest.raises(InvalidInputError) as ei:
            runner.make_still(small_models[0], [GarmentSpec(blank)], "PNG", CancelToken())
        assert ei.value.reason == "GARMENT_NOT_FOUND" and not is_retryable(ei.value)
    finally:
        runner.close()
        server.stop(0)
    gone = GrpcStillRunner("127.0.0.1:1", timeout=2)
    with pytest.raises(UnavailableError) as ei:
        gone.make_still(small_models[0], [GarmentSpec(b"x")], "PNG", CancelToken())
    assert is_retryable(ei.value)
    gone.close()


def test_reference_reader_tells_poison_from_transient(tmp_path):
    read = ReferenceReader(1000)
    (tmp_path / "small.bin").write_bytes(b"x" * 10)
    (tmp_path / "big.bin").write_bytes(b"x" * 2000)
    assert read((tmp_path / "small.bin").as_uri()) == b"x" * 10
    for uri in [(tmp_path / "big.bin").as_uri(), (tmp_path / "none").as_uri(), "gs://b/k",
                "s3://bucket/key"]:  # fmt: skip
        with pytest.raises(InvalidInputError) as ei:
            read(uri, "garments[0].image_uri")
        assert ei.value.reason == "GARMENT_FETCH_FAILED"
        assert ei.value.field == "garments[0].image_uri"
    with pytest.raises(UnavailableError):  # nothing listens there: transient
        read("http://127.0.0.1:1/x.png")


def test_events_file_round_trip_and_errors(tmp_path):
    path = write_samples(tmp_path / "samples", 3, size=128)
    events = read_events(path)
    assert [e.event_id for e in events] == ["sample-0000", "sample-0001", "sample-0002"]
    for e in events:
        validate_event(e)
        data = Path(e.garments[0].image_uri.removeprefix("file://")).read_bytes()
        assert hashlib.sha256(data).hexdigest()  # the referenced flat-lay exists
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text() + '{"eventId": 3, "nope": true}\n')
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:4"):
        read_events(bad)


def test_clips_through_the_animate_runner(tmp_path, embedded, small_models):
    """DRAPE_CATALOG_CLIP_RUNNER=services.animate.catalog:make_clip_runner: an event asking
    for clips gets, per model, an H.264 clip, its preview and its poster in the store."""
    from services.catalog_adapter.runners import load_clip_runner
    from services.common.video import decode_video

    settings = load_settings(env={})
    runner = load_clip_runner("services.animate.catalog:make_clip_runner", settings)
    assert runner.backend == "skeletal"
    garment = tmp_path / "tee.png"
    Image.fromarray(draw_sample_garment(0, 256)).save(garment)
    store = FileStore(tmp_path / "store")
    jobs = JobRunner(
        store, Rosters({"r": small_models}, "r"), embedded, runner, ReferenceReader(1 << 24)
    )
    res = jobs.attempt(sample_event(1, garment.as_uri(), prefix="clip", clips=True), CancelToken())
    assert not res.failures, res.failures
    kinds = sorted((a.model_id, a.kind) for a in res.ready)
    for model in ("astronaut", "grace-hopper"):
        for kind in (ev_pb.ASSET_KIND_STILL, ev_pb.ASSET_KIND_CLIP, ev_pb.ASSET_KIND_PREVIEW,
                     ev_pb.ASSET_KIND_POSTER):  # fmt: skip
            assert (model, kind) in kinds
    mp4 = [k for k in store.list() if k.endswith(".mp4")]
    assert len(mp4) == 2
    video = decode_video((store.root / mp4[0]).read_bytes())
    assert video.codec == "h264" and video.frame_count > 10
