"""Registered garments: RegisterGarment and Garment.garment_id over real gRPC (port 0), the
hints on the contract and their refusals, the bounded LRU, the store shared by two
servers, and ``drape garments register`` + ``drape tryon --garment-id``.

Garments are drawn in code (services/tryon/flatlays.py); the person is scikit-image's
astronaut, a real photo that ships in the package."""

from __future__ import annotations

import dataclasses
import io

import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data

from drape.common.v1 import common_pb2
from drape.tryon.v1 import tryon_service_pb2 as pb
from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc
from services.common.analysis import garment as G
from services.common.analysis.person import PersonSelection
from services.common.config import load_settings
from services.common.errors import InvalidInputError
from services.tryon import hints as H
from services.tryon import registry as R
from services.tryon.flatlays import draw_garment
from services.tryon.server import TryOnApp

from helpers import error_details, png, serving

TEE = png(draw_garment("tshirt", "stripes", (30, 90, 200)).image)
PERSON = png(data.astronaut())


def _settings(**kw):
    return load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0", **kw)


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    return tmp_path_factory.mktemp("garments").as_uri()


@pytest.fixture(scope="module")
def server(store_uri):
    """A TryOnService sharing a file garment store, with room for 3 analyses in process."""
    from services.common.server import create_server

    settings = _settings(garment_store=store_uri, garment_cache_size=3)
    app = TryOnApp(settings)
    srv, port = create_server("127.0.0.1:0", app, settings=settings)
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        assert srv.wait_ready(120), srv.load_error
        yield app, pb_grpc.TryOnServiceStub(channel), port, srv
    finally:
        channel.close()
        srv.stop(0)


@pytest.fixture(scope="module")
def stub(server):
    return server[1]


def register(stub, flat: bytes = TEE, **kw) -> pb.RegisterGarmentResponse:
    req = pb.RegisterGarmentRequest(flat_lay=common_pb2.Image(data=flat), **kw)
    return stub.RegisterGarment(req, timeout=60)


def tryon(stub, *garments: pb.Garment, **kw) -> pb.TryOnResponse:
    req = pb.TryOnRequest(person=common_pb2.Image(data=PERSON), garments=garments, **kw)
    return stub.TryOn(req, timeout=120)


def refused(fn, *args, **kw) -> tuple[str | None, str | None]:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    return error_details(ei.value)


# --------------------------------------------------------------------------- unit


def test_hint_tables_follow_the_contract():
    top, bottom, dress, outer = (H.LENGTH_HINT[c] for c in ("top", "bottom", "dress", "outerwear"))
    assert [top[v] for v in (1, 2, 3, 4, 8)] == ["cropped", "cropped", "regular", "long", "long"]
    assert [bottom[v] for v in (3, 4, 5, 6, 7, 8)] == ["cropped"] * 2 + ["regular"] * 2 + [
        "long"
    ] * 2
    assert [dress[v] for v in (4, 5, 6)] == ["cropped", "regular", "long"]
    assert [outer[v] for v in (2, 4, 5)] == ["cropped", "regular", "long"]
    # What the response reports for a class maps back onto the same class.
    for (cat, cls), value in H.LENGTH_REPORTED.items():
        assert H.LENGTH_HINT[cat][value] == cls
    assert H.hints_from_proto(1, 3, 0) == R.Hints("top", "long", None)
    assert H.hints_from_proto(2, 0, 6) == R.Hints("bottom", None, "regular")
    for args, reason, field in [
        ((99, 0, 0), "GARMENT_CATEGORY_INVALID", "g.category"),
        ((1, 17, 0), "GARMENT_SLEEVE_INVALID", "g.sleeve"),
        ((1, 0, -3), "GARMENT_LENGTH_INVALID", "g.length"),
        ((2, 2, 0), "GARMENT_HINT_CONFLICT", "g.sleeve"),
        ((0, 0, 5), "GARMENT_HINT_INCOMPLETE", "g.length"),
    ]:
        with pytest.raises(InvalidInputError) as ei:
            H.hints_from_proto(*args, prefix="g.")
        assert (ei.value.reason, ei.value.field) == (reason, field)


def test_garment_ids_are_content_hashes_of_bytes_hints_and_version():
    gid = R.garment_id(b"abc", R.Hints(), "v1")
    assert R.GARMENT_ID_RE.fullmatch(gid)
    others = {
        R.garment_id(b"abd", R.Hints(), "v1"),
        R.garment_id(b"abc", R.Hints("top"), "v1"),
        R.garment_id(b"abc", R.Hints(sleeve="short"), "v1"),
        R.garment_id(b"abc", R.Hints(length="long"), "v1"),
        R.garment_id(b"abc", R.Hints(), "v2"),
    }
    assert gid not in others and len(others) == 5
    assert R.analysis_version("classical") != R.analysis_version("sam:sam-vit-b/1")
    for bad in ("", gid.upper(), gid + "0", gid[:-1], "../" + gid[3:], gid[:-1] + "\n"):
        with pytest.raises(InvalidInputError) as ei:
            R.check_garment_id(bad, "garment_id")
        assert ei.value.reason == "GARMENT_ID_INVALID"


@pytest.fixture(scope="module")
def tee_analysis():
    return G.analyze_garment(draw_garment("tshirt").image)


def test_analysis_round_trips_through_the_store_format(tee_analysis):
    npz, doc = R.dump_analysis(tee_analysis, version="v")
    back = R.load_analysis(npz, doc)
    for f in dataclasses.fields(tee_analysis):
        a, b = getattr(tee_analysis, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
        else:
            assert a == b and type(a) is type(b), f.name
    # Generic over what fields may hold: nested arrays, tuples, int-keyed dicts, our own
    # dataclasses and enums, numpy scalars.
    value = {
        "parts": [np.arange(6, dtype=np.int16).reshape(2, 3), (1, 2.5, None)],
        "by_row": {3: (np.float32(0.5), True)},
        "hints": R.Hints("top", None, "long"),
        "selection": PersonSelection.REFUSE,
    }
    arrays: dict = {}
    back = R._decode(R._encode(value, arrays), arrays)
    assert np.array_equal(back["parts"][0], value["parts"][0])
    assert back["parts"][1] == (1, 2.5, None) and back["by_row"] == {3: (0.5, True)}
    assert back["hints"] == value["hints"] and back["selection"] is PersonSelection.REFUSE


def test_lru_keeps_the_most_recent_and_copies_in_and_out(tee_analysis, tmp_path):
    reg = R.GarmentRegistry(2, version="v")
    ids = [R.garment_id(bytes([i]), R.Hints(), "v") for i in range(3)]
    reg.put(ids[0], tee_analysis)
    reg.put(ids[1], tee_analysis)
    assert reg.get(ids[0]) is not None  # now the most recent
    reg.put(ids[2], tee_analysis)
    assert len(reg) == 2 and reg.get(ids[1]) is None  # the least recent went
    got = reg.get(ids[0])
    got.mask[:] = 0  # a caller's change never reaches the cache
    assert reg.get(ids[0]).mask.max() > 0
    with pytest.raises(ValueError):
        R.GarmentRegistry(0)
    # With a store, an evicted analysis comes back from it.
    from services.catalog_adapter.store import FileStore

    stored = R.GarmentRegistry(1, FileStore(tmp_path), version="v")
    stored.put(ids[0], tee_analysis)
    stored.put(ids[1], tee_analysis, persist=False)  # evicts ids[0] from the LRU
    assert stored.get(ids[0], use_store=False) is None
    assert stored.get(ids[0]).category == "top" and stored.store_hits == 1
    assert sorted(FileStore(tmp_path).list()) == [f"_garments/{ids[0]}.json",
                                                  f"_garments/{ids[0]}.npz"]  # fmt: skip


# --------------------------------------------------------------------------- over gRPC


def test_register_then_try_on_by_id_gives_the_same_still_as_by_bytes(server):
    app, stub, *_ = server
    bytes_first = tryon(stub, pb.Garment(flat_lay=common_pb2.Image(data=TEE)), request_id="b-1")
    reg = register(stub, request_id="r-1",
                   experiment=common_pb2.Experiment(experiment_id="reg", variant="a"))  # fmt: skip
    assert R.GARMENT_ID_RE.fullmatch(reg.garment_id)
    assert reg.meta.request_id == "r-1" and reg.meta.experiment.variant == "a"
    assert reg.meta.backend_version == app.registry.version
    a = reg.analysis
    assert a.category == pb.GARMENT_CATEGORY_TOP and not a.category_from_request
    assert a.sleeve_length == pb.SLEEVE_LENGTH_SHORT and a.box.width > 0
    assert a == bytes_first.garments[0]
    # The TryOn by bytes had analysed it already: registering reused that analysis and
    # wrote it to the shared store.
    assert reg.cached and app.registry.persisted(reg.garment_id)
    by_id = tryon(stub, pb.Garment(garment_id=reg.garment_id))
    assert by_id.image.data == bytes_first.image.data
    assert by_id.garments[0] == a
    again = register(stub)
    assert again.cached and again.garment_id == reg.garment_id


def test_hints_reach_the_analysis_and_change_the_id(stub):
    plain = register(stub)
    hinted = register(
        stub,
        category=pb.GARMENT_CATEGORY_TOP,
        sleeve=pb.SLEEVE_LENGTH_SHORT,
        length=pb.GARMENT_LENGTH_HIP,
    )
    assert hinted.garment_id != plain.garment_id and not hinted.cached
    a = hinted.analysis
    assert a.category == pb.GARMENT_CATEGORY_TOP and a.category_from_request
    assert a.sleeve_length == pb.SLEEVE_LENGTH_SHORT
    assert a.garment_length == pb.GARMENT_LENGTH_HIP


def test_unknown_and_malformed_ids(stub):
    unknown = "0" * 64
    reason, field = refused(tryon, stub, pb.Garment(garment_id=unknown))
    assert (reason, field) == ("GARMENT_ID_UNKNOWN", "garments[0].garment_id")
    with pytest.raises(grpc.RpcError) as ei:
        tryon(stub, pb.Garment(garment_id=unknown))
    assert "RegisterGarment" in ei.value.details() and "register" in ei.value.details()
    for bad in ("nope", "0" * 63, "0" * 65, "A" * 64, "0" * 63 + "/", "x" * 5000):
        assert refused(tryon, stub, pb.Garment(garment_id=bad)) == (
            "GARMENT_ID_INVALID", "garments[0].garment_id",
        )  # fmt: skip


@pytest.mark.parametrize(
    "garment, reason, field",
    [
        (pb.Garment(), "GARMENT_SOURCE_MISSING", "garments[0]"),
        (pb.Garment(category=pb.GARMENT_CATEGORY_TOP), "GARMENT_SOURCE_MISSING", "garments[0]"),
        (
            pb.Garment(flat_lay=common_pb2.Image(data=TEE), garment_id="0" * 64),
            "GARMENT_SOURCE_CONFLICT",
            "garments[0]",
        ),
        (
            pb.Garment(garment_id="0" * 64, sleeve=pb.SLEEVE_LENGTH_LONG),
            "GARMENT_HINT_CONFLICT",
            "garments[0].sleeve",
        ),
        (
            pb.Garment(flat_lay=common_pb2.Image(data=TEE), category=99),
            "GARMENT_CATEGORY_INVALID",
            "garments[0].category",
        ),
        (
            pb.Garment(flat_lay=common_pb2.Image(data=TEE), sleeve=12),
            "GARMENT_SLEEVE_INVALID",
            "garments[0].sleeve",
        ),
        (
            pb.Garment(flat_lay=common_pb2.Image(data=TEE), category=1, length=-1),
            "GARMENT_LENGTH_INVALID",
            "garments[0].length",
        ),
        (
            pb.Garment(flat_lay=common_pb2.Image(data=TEE), length=pb.GARMENT_LENGTH_KNEE),
            "GARMENT_HINT_INCOMPLETE",
            "garments[0].length",
        ),
        (
            pb.Garment(
                flat_lay=common_pb2.Image(data=TEE),
                category=pb.GARMENT_CATEGORY_BOTTOM,
                sleeve=pb.SLEEVE_LENGTH_SHORT,
            ),
            "GARMENT_HINT_CONFLICT",
            "garments[0].sleeve",
        ),
    ],
)
def test_garment_refusals(stub, garment, reason, field):
    assert refused(tryon, stub, garment) == (reason, field)


@pytest.mark.parametrize(
    "kw, field",
    [({"tuck": 5}, "tuck"), ({"person_selection": 9}, "person_selection"),
     ({"output_format": 42}, "output_format")],
)  # fmt: skip
def test_unknown_enum_values_of_the_request(stub, kw, field):
    reason, got = refused(tryon, stub, pb.Garment(flat_lay=common_pb2.Image(data=TEE)), **kw)
    assert (reason, got) == ("OPTION_OUT_OF_RANGE", field)


@pytest.mark.parametrize(
    "kw, reason, field",
    [
        ({"flat_lay": None}, "GARMENT_SOURCE_MISSING", "flat_lay"),
        ({"flat_lay": b"junk"}, "IMAGE_UNRECOGNIZED", "flat_lay.data"),
        ({"flat_lay": png(np.full((300, 300, 3), 255, np.uint8))}, "GARMENT_NOT_FOUND",
         "flat_lay"),
        ({"category": 99}, "GARMENT_CATEGORY_INVALID", "category"),
        ({"category": 1, "sleeve": 5}, "GARMENT_SLEEVE_INVALID", "sleeve"),
        ({"category": 1, "length": 9}, "GARMENT_LENGTH_INVALID", "length"),
        ({"length": 3}, "GARMENT_HINT_INCOMPLETE", "length"),
    ],
)  # fmt: skip
def test_register_refusals(stub, kw, reason, field):
    flat = kw.pop("flat_lay", TEE)
    req = pb.RegisterGarmentRequest(**kw)
    if flat is not None:
        req.flat_lay.data = flat
    assert refused(stub.RegisterGarment, req, timeout=60) == (reason, field)


def test_lru_bound_of_the_service(server):
    app, stub, *_ = server
    ids = {
        register(stub, png(draw_garment("tank", color=(20 * i, 120, 80)).image)).garment_id
        for i in range(5)
    }
    assert len(ids) == 5 and len(app.registry) == 3  # garment_cache_size=3


def test_cache_metrics(server):
    app, stub, _port, srv = server
    register(stub)
    value = srv.metrics.registry.get_sample_value
    assert value("drape_garment_cache_lookups_total", {"outcome": "hit"}) == app.registry.hits >= 1
    assert value("drape_garment_cache_entries") == len(app.registry)


def test_store_shared_by_two_servers(server, store_uri):
    _app, stub_a, *_ = server
    dress = png(draw_garment("tank", color=(200, 40, 40)).image)
    gid = register(stub_a, dress, category=pb.GARMENT_CATEGORY_TOP).garment_id
    settings = _settings(garment_store=store_uri)
    app_b = TryOnApp(settings)
    with serving(app_b, settings=settings, ready_timeout=120) as (_s, channel):
        stub_b = pb_grpc.TryOnServiceStub(channel)
        resp = tryon(stub_b, pb.Garment(garment_id=gid))
        assert resp.garments[0].category == pb.GARMENT_CATEGORY_TOP
        assert app_b.registry.store_hits == 1
        again = register(stub_b, dress, category=pb.GARMENT_CATEGORY_TOP)
        assert again.cached and again.garment_id == gid
    lone = _settings()  # no shared store: the id is unknown there
    with serving(TryOnApp(lone), settings=lone, ready_timeout=120) as (_s, channel):
        stub_c = pb_grpc.TryOnServiceStub(channel)
        assert refused(tryon, stub_c, pb.Garment(garment_id=gid))[0] == "GARMENT_ID_UNKNOWN"


# --------------------------------------------------------------------------- CLI


def test_cli_register_then_tryon_by_id(tmp_path, capsys, server):
    from services.cli import main

    _app, _stub, port, _srv = server
    tee, person = tmp_path / "tee.png", tmp_path / "person.png"
    tee.write_bytes(TEE)
    person.write_bytes(PERSON)
    store = tmp_path / "store"
    assert main(["garments", "register", str(tee), "--category", "top", "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    gid = lines[0]
    assert R.GARMENT_ID_RE.fullmatch(gid) and "category=top (hint)" in lines[1]
    assert "cached=no" in lines[1]
    assert main(["garments", "register", str(tee), "--category", "top", "--store", str(store)]) == 0
    assert "cached=yes" in capsys.readouterr().out  # a second process: from the store
    out = tmp_path / "still.png"
    rc = main(["tryon", str(person), "--garment-id", gid, "--store", str(store), "-o", str(out),
               "--quiet", "--no-refine"])  # fmt: skip
    assert rc == 0 and Image.open(out).size == (512, 512)
    assert "top/short" in capsys.readouterr().out
    rc = main(["tryon", str(person), "--garment-id", "1" * 64, "--store", str(store), "-o",
               str(out), "--quiet"])  # fmt: skip
    assert rc == 1 and "GARMENT_ID_UNKNOWN" in capsys.readouterr().err
    assert main(["tryon", str(person), "-o", str(out)]) == 2  # neither flat-lay nor id

    # Against a running service.
    addr = f"127.0.0.1:{port}"
    assert main(["garments", "register", str(tee), "--server", addr]) == 0
    remote = capsys.readouterr().out.splitlines()[0]
    out2 = tmp_path / "remote.jpg"
    rc = main(["tryon", str(person), "--garment-id", remote, "--server", addr, "-o", str(out2)])
    assert rc == 0 and Image.open(io.BytesIO(out2.read_bytes())).format == "JPEG"
    assert main(["garments", "register", str(tee), "--server", addr, "--length", "knee"]) == 1
    assert "GARMENT_HINT_INCOMPLETE" in capsys.readouterr().err


def test_settings_check_the_garment_store():
    from services.common.errors import ConfigError

    assert load_settings(env={"DRAPE_GARMENT_STORE": "file:///tmp/g"}).garment_store
    for env, setting in [
        ({"DRAPE_GARMENT_STORE": "/srv/garments"}, "DRAPE_GARMENT_STORE"),
        ({"DRAPE_GARMENT_STORE": "s3://bucket/garments"}, "DRAPE_CATALOG_S3_ENDPOINT"),
        ({"DRAPE_GARMENT_CACHE_SIZE": "0"}, "DRAPE_GARMENT_CACHE_SIZE"),
    ]:
        with pytest.raises(ConfigError) as ei:
            load_settings(env=env)
        assert ei.value.setting == setting
