"""Experiments: definitions, deterministic assignment, the store on SQLite and a real
PostgreSQL server, attribution, the report (text, HTML, plot), CSV imports, the CLI and
ExperimentService over gRPC."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from drape.experiments.v1 import experiment_service_pb2 as pb
from drape.experiments.v1 import experiment_service_pb2_grpc as pb_grpc
from services.common.errors import ConfigError, InvalidInputError
from services.experiments import report as R
from services.experiments.assignment import Assigner, bucket, pick
from services.experiments.definition import DefinitionError, load_definitions, parse_definitions
from services.experiments.ingest import to_timestamp
from services.experiments.server import ExperimentsApp
from services.experiments.store import (
    SCHEMA_VERSION,
    Exposure,
    Order,
    Return,
    SQLiteStore,
    open_store,
)

ROOT = Path(__file__).resolve().parents[1]
DAY = 86_400_000
T0 = 1_790_000_000_000  # 2026-09-21, ms

TOML = """\
[[experiment]]
id = "clip-returns"
description = "Does the clip lower returns?"
unit = "shopper"
start = 2026-01-01T00:00:00Z
attribution_window_hours = 168
salt = "s1"

[[experiment.variant]]
name = "still"
weight = 7
output = "still"
refine = true

[[experiment.variant]]
name = "clip"
weight = 3
output = "still+clip"
motion_template = "idle-sway-upper"
tryon_backend = "geometric"
roster_id = "studio-b"

[[experiment]]
id = "ended"
stop = 2020-01-01T00:00:00Z

[[experiment.variant]]
name = "a"

[[experiment.variant]]
name = "b"
"""


@pytest.fixture
def defs_file(tmp_path):
    p = tmp_path / "experiments.toml"
    p.write_text(TOML)
    return p


@pytest.fixture
def assigner(defs_file):
    return Assigner(load_definitions(defs_file))


# ---------------------------------------------------------------- definitions


def test_definitions_from_toml_and_json_agree(defs_file, tmp_path):
    from services.experiments.definition import to_dict

    exps = load_definitions(defs_file)
    e = exps["clip-returns"]
    assert e.control == "still" and e.weights == (7.0, 3.0) and e.unit == "shopper"
    assert e.attribution_window == dt.timedelta(days=7)
    clip = e.variant("clip").recipe
    assert (clip.output, clip.motion_template, clip.roster_id) == (
        "still+clip",
        "idle-sway-upper",
        "studio-b",
    )
    assert clip.refine is None and e.variant("still").recipe.refine is True
    j = tmp_path / "experiments.json"
    j.write_text(json.dumps({"experiment": [to_dict(x) for x in exps.values()]}))
    assert load_definitions(j) == exps


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["experiment"][0]["variant"].pop(), "2 to 16"),
        (lambda d: d["experiment"][0]["variant"][1].update(name="still"), "repeat"),
        (lambda d: d["experiment"][0]["variant"][1].update(weight=0), "weight"),
        (lambda d: d["experiment"][0]["variant"][1].update(weight=float("nan")), "weight"),
        (lambda d: d["experiment"][0]["variant"][1].update(output="video"), "output"),
        (lambda d: d["experiment"][0]["variant"][1].update(colour="red"), "unknown key"),
        (lambda d: d["experiment"][0].update(control="nope"), "control"),
        (lambda d: d["experiment"][0].update(id="Bad Id"), ".id"),
        (lambda d: d["experiment"][0].update(unit="household"), "unit"),
        (lambda d: d["experiment"][0].update(stop="2025-01-01T00:00:00Z"), "not after start"),
        (lambda d: d["experiment"][0].update(start="2026-01-01T00:00:00"), "time zone"),
        (lambda d: d["experiment"][0].update(attribution_window_hours=-1), "attribution"),
        (lambda d: d["experiment"].append(dict(d["experiment"][0])), "defined twice"),
    ],
)
def test_bad_definitions_are_refused_naming_the_key(defs_file, change, message):
    import tomllib

    data = tomllib.loads(defs_file.read_text())
    change(data)
    with pytest.raises(DefinitionError, match=message):
        parse_definitions(data)


def test_unreadable_definitions_file_is_a_config_error(tmp_path):
    from services.common.config import load_settings

    bad = tmp_path / "x.toml"
    bad.write_text("[[experiment]\n")
    for path in (bad, tmp_path / "missing.toml"):
        with pytest.raises(ConfigError, match="DRAPE_EXPERIMENTS_FILE"):
            Assigner.from_settings(load_settings(env={}, experiments_file=str(path)))


# ---------------------------------------------------------------- assignment


def test_assignment_is_a_pinned_salted_hash():
    # The algorithm is a contract (other systems may recompute it): pin one value.
    import hashlib

    want = int.from_bytes(hashlib.sha256(b"s1/clip-returns/shopper-42").digest()[:8], "big")
    assert bucket("clip-returns", "shopper-42", "s1") == want / 2**64
    assert pick((7, 3), 0.0) == 0 and pick((7, 3), 0.6999) == 0 and pick((7, 3), 0.7001) == 1
    assert pick((1, 1, 2), 0.9999999) == 2


def test_assignment_is_stable_across_replicas_and_processes(defs_file, assigner):
    replica = Assigner(load_definitions(defs_file))
    units = [f"shopper-{i}" for i in range(200)]
    mine = [assigner.assign("clip-returns", u).variant.name for u in units]
    assert mine == [replica.assign("clip-returns", u).variant.name for u in units]
    # Another process (another hash seed): the CLI prints the same variants.
    cmd = [sys.executable, "-m", "services.cli", "experiments", "--definitions", str(defs_file)]
    out = subprocess.run(
        [*cmd, "assign", "clip-returns", *units[:20]],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()  # fmt: skip
    assert [line.split("\t")[1] for line in out] == mine[:20]


def test_allocation_follows_the_weights_and_experiments_are_independent(assigner):
    from scipy.stats import chi2_contingency, chisquare

    units = [f"u{i}" for i in range(20_000)]
    a = np.array([assigner.assign("clip-returns", u).bucket for u in units])
    variants = a >= 0.7
    counts = [int((~variants).sum()), int(variants.sum())]
    assert chisquare(counts, [14_000, 6_000]).pvalue > 0.001
    # A second experiment's split is independent of the first.
    other = Assigner(
        parse_definitions(
            {"experiment": [{"id": "other", "variant": [{"name": "x"}, {"name": "y"}]}]}
        )
    )
    b = np.array([other.assign("other", u).variant.name == "y" for u in units])
    table = [
        [np.sum(~variants & ~b), np.sum(~variants & b)],
        [np.sum(variants & ~b), np.sum(variants & b)],
    ]
    assert chi2_contingency(table).pvalue > 0.001


@pytest.mark.parametrize(
    "exp, unit, reason",
    [
        ("nope", "u1", "EXPERIMENT_NOT_FOUND"),
        ("Bad Tag", "u1", "INVALID_EXPERIMENT_TAG"),
        ("clip-returns", "", "INVALID_UNIT_ID"),
        ("clip-returns", "has space", "INVALID_UNIT_ID"),
        ("clip-returns", "x" * 129, "INVALID_UNIT_ID"),
        ("ended", "u1", "EXPERIMENT_NOT_RUNNING"),
    ],
)
def test_assignment_refusals(assigner, exp, unit, reason):
    with pytest.raises(InvalidInputError) as err:
        assigner.assign(exp, unit)
    assert err.value.reason == reason


def test_not_running_before_the_start(assigner):
    with pytest.raises(InvalidInputError, match="starts"):
        assigner.assign("clip-returns", "u1", dt.datetime(2025, 6, 1, tzinfo=dt.UTC))


# ---------------------------------------------------------------- store


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'x.db'}"
    import pg8000.native

    host, port, user = request.getfixturevalue("postgres_server")
    name = f"exp_{abs(hash(request.node.name)) % 10**9}"
    con = pg8000.native.Connection(user, host=host, port=port, database="postgres")
    con.run(f"DROP DATABASE IF EXISTS {name}")
    con.run(f"CREATE DATABASE {name}")
    con.close()
    return f"postgresql://{user}@{host}:{port}/{name}"


def _fixture_data(store):
    """Two units in each arm; see the expected attribution in the test."""
    e = lambda i, v, u, p, t: Exposure(f"e{i}", "clip-returns", v, u, p, t)  # noqa: E731
    store.add_exposures(
        [
            e(1, "still", "s1", "p1", T0),
            e(2, "still", "s1", "p2", T0),
            e(3, "still", "s2", "p1", T0),
            e(4, "clip", "c1", "p1", T0),
            e(5, "clip", "c2", "p1", T0 + 5 * DAY),  # after c2's order: not attributed
            e(6, "clip", "c3", "p1", T0 - 10 * DAY),  # older than the 7-day window
        ]
    )
    store.add_exposures(
        [
            Exposure("e7", "other-exp", "x", "s2", "p9", T0),  # another experiment
        ]
    )
    store.add_exposures([e(1, "still", "s1", "p1", T0)])  # a duplicate delivery: ignored
    store.add_orders(
        [
            Order("o1", "s1", T0 + DAY, (("p1", 1), ("p2", 2))),  # still, returned (p2)
            Order("o2", "s2", T0 + DAY, (("p1", 1),)),  # still, kept
            Order("o3", "s2", T0 + 2 * DAY, (("p3", 1),)),  # product never shown: no
            Order("o4", "c1", T0 + 6 * DAY, (("p1", 1),)),  # clip, returned
            Order("o5", "c2", T0 + DAY, (("p1", 1),)),  # exposure came later: no
            Order("o6", "c3", T0 + DAY, (("p1", 1),)),  # outside the window: no
            Order("o7", "c1", T0 + 3 * DAY, (("p1", 1),)),  # clip, kept
        ]
    )
    store.add_orders([Order("o1", "s1", T0 + DAY, (("p1", 1), ("p2", 2)))])  # duplicate
    store.add_returns(
        [
            Return("o1", "p2", 1, T0 + 3 * DAY),
            Return("o4", "p1", 1, T0 + 9 * DAY),
            Return("o3", "p3", 1, T0 + 9 * DAY),  # an unattributed order's return
        ]
    )
    store.add_returns([Return("o4", "p1", 1, T0 + 9 * DAY)])  # duplicate


def test_store_migrates_dedups_and_attributes(store_url, assigner):
    store = open_store(store_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.migrate() == []  # nothing left to apply
        _fixture_data(store)
        assert store.record_assignment("clip-returns", "s1", "still", T0)
        assert not store.record_assignment("clip-returns", "s1", "still", T0 + 1)
        window = 7 * DAY
        got = sorted(store.attributed_orders("clip-returns", window))
        assert got == [
            ("o1", "still", T0 + DAY, True),
            ("o2", "still", T0 + DAY, False),
            ("o4", "clip", T0 + 6 * DAY, True),
            ("o7", "clip", T0 + 3 * DAY, False),
        ]
        assert store.exposure_counts("clip-returns") == {"still": (3, 2), "clip": (3, 3)}
        assert store.assigned_units("clip-returns") == {"still": 1}
        assert store.conflicting_units("clip-returns") == 0
        rep = R.build_report(store, assigner.get("clip-returns"))
    finally:
        store.close()
    rows = {v.name: v for v in rep.variants}
    assert (rows["still"].orders, rows["still"].returned) == (2, 1)
    assert (rows["clip"].orders, rows["clip"].returned) == (2, 1)
    assert rows["clip"].diff == 0.0 and rows["still"].diff is None
    # Reopening an existing database applies nothing and keeps the data.
    again = open_store(store_url)
    try:
        assert again.migrate() == [] and len(again.attributed_orders("clip-returns", window)) == 4
    finally:
        again.close()


def test_store_refuses_a_newer_schema_and_unknown_urls(tmp_path):
    s = SQLiteStore(tmp_path / "x.db")
    s._run("INSERT INTO schema_migrations VALUES (?, ?, ?)", (SCHEMA_VERSION + 1, "future", 0))
    s.close()
    with pytest.raises(ConfigError, match="newer"):
        open_store(str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="unknown scheme"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="cannot open"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def test_units_exposed_under_two_variants_are_reported(tmp_path, assigner):
    store = SQLiteStore()
    store.add_exposures(
        [
            Exposure("a", "clip-returns", "still", "u1", "p1", T0),
            Exposure("b", "clip-returns", "clip", "u1", "p1", T0),
        ]
    )
    store.add_orders([Order("o1", "u1", T0 + 1, (("p1", 1),))])
    rep = R.build_report(store, assigner.get("clip-returns"))
    assert rep.conflicting_units == 1 and rep.ambiguous_orders == 1
    assert sum(v.orders for v in rep.variants) == 0
    assert "more than one variant" in R.to_text(rep)


# ---------------------------------------------------------------- report, CSV, CLI


def _simulated_store(path: Path, assigner, n_units: int, rates: dict, seed: int = 1, drop=0.0):
    """Exposures and orders for ``n_units`` units; returns with the given rates; ``drop``:
    share of the second variant's units whose exposures get lost (a broken allocation)."""
    rng = np.random.default_rng(seed)
    exp = assigner.get("clip-returns")
    store = open_store(f"sqlite:///{path}")
    exposures, orders, returns = [], [], []
    for i in range(n_units):
        unit = f"u{i}"
        v = assigner.assign("clip-returns", unit).variant.name
        if v == "clip" and rng.random() < drop:
            continue
        t = T0 + int(rng.integers(0, 20 * DAY))
        exposures.append(Exposure(f"x{i}", exp.id, v, unit, "p1", t))
        if rng.random() < 0.5:
            orders.append(Order(f"o{i}", unit, t + DAY, (("p1", 1),)))
            if rng.random() < rates[v]:
                returns.append(Return(f"o{i}", "p1", 1, t + 5 * DAY))
    store.add_exposures(exposures)
    store.add_orders(orders)
    store.add_returns(returns)
    return store


def test_report_shows_the_effect_and_writes_html_with_the_plot(tmp_path, assigner):
    store = _simulated_store(tmp_path / "s.db", assigner, 6000, {"still": 0.30, "clip": 0.18})
    rep = R.build_report(store, assigner.get("clip-returns"))
    store.close()
    still, clip = rep.variants
    assert still.orders + clip.orders > 2500
    assert clip.diff_ci[1] < 0 and clip.pvalue < 0.001  # a 12-point drop is found
    assert clip.diff_ci[0] < -0.12 < clip.diff_ci[1] or abs(clip.diff + 0.12) < 0.05
    assert -1 < clip.rel_ci[0] < clip.rel < clip.rel_ci[1] < 0
    assert 0 < clip.mde < 0.1 and not rep.srm.flagged
    page = R.to_html(rep)
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    img = Image.open(io.BytesIO(base64.b64decode(m.group(1))))
    assert img.format == "PNG" and img.size[0] > 500
    # The plot draws both curves: each variant's colour is present.
    px = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    for rgb in ((31, 119, 180), (255, 127, 14)):  # matplotlib C0, C1
        assert (np.abs(px - rgb).sum(axis=1) < 30).sum() > 200
    assert "<td>clip</td>" in page and "sample ratio" in page
    doc = R.to_json(rep)
    assert doc["variants"][1]["orders"] == clip.orders and doc["srm"]["flagged"] is False


def test_report_flags_a_broken_allocation(tmp_path, assigner):
    store = _simulated_store(
        tmp_path / "b.db", assigner, 6000, {"still": 0.2, "clip": 0.2}, drop=0.2
    )
    rep = R.build_report(store, assigner.get("clip-returns"))
    store.close()
    assert rep.srm.flagged and "MISMATCH" in R.to_text(rep)


def test_csv_imports_and_cli_report(tmp_path, defs_file, capsys):
    from services.cli import main

    db = f"sqlite:///{tmp_path / 'c.db'}"
    store = open_store(db)
    store.add_exposures(
        [
            Exposure("e1", "clip-returns", "still", "u1", "p1", T0),
            Exposure("e2", "clip-returns", "clip", "u2", "p1", T0),
        ]
    )
    store.close()
    (tmp_path / "orders.csv").write_text(
        "order_id,unit_id,time,product_id,quantity\n"
        "o1,u1,2026-09-22T10:00:00Z,p1,1\n"
        "o1,u1,2026-09-22T10:00:00Z,p2,2\n"
        f"o2,u2,{T0 + DAY},p1,\n"
    )
    (tmp_path / "returns.csv").write_text(
        "order_id,product_id,quantity,time\no1,p1,1,2026-09-25T00:00:00+02:00\n"
    )
    base = ["experiments", "--db", db, "--definitions", str(defs_file)]
    assert main([*base, "import-orders", str(tmp_path / "orders.csv")]) == 0
    assert main([*base, "import-returns", str(tmp_path / "returns.csv")]) == 0
    html = tmp_path / "r" / "report.html"
    assert main([*base, "report", "clip-returns", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "still (control)" in out and "100.00 %" in out and "sample ratio" in out
    assert html.read_text().count("data:image/png;base64,") == 1
    assert main([*base, "report", "clip-returns", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(v["orders"], v["returned"]) for v in doc["variants"]] == [(1, 1), (1, 0)]
    # Bad input: a clear reason naming the line, exit status 1, no traceback.
    (tmp_path / "bad.csv").write_text(
        "order_id,unit_id,time,product_id,quantity\no9,u1,yesterday,p1,1\n"
    )
    assert main([*base, "import-orders", str(tmp_path / "bad.csv")]) == 1
    err = capsys.readouterr().err
    assert "TIME_INVALID" in err and "line 2" in err
    (tmp_path / "cols.csv").write_text("order,unit\n")
    assert main([*base, "import-orders", str(tmp_path / "cols.csv")]) == 1
    assert "CSV_COLUMNS_MISSING" in capsys.readouterr().err
    assert main([*base, "report", "nope"]) == 1
    assert "EXPERIMENT_NOT_FOUND" in capsys.readouterr().err


# ---------------------------------------------------------------- gRPC


def _reason(err: grpc.RpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    for d in rpc_status.from_call(err).details:
        if d.Unpack(info):
            return info.reason
    return ""


@pytest.fixture
def service(make_server, defs_file, tmp_path):
    from services.common.config import load_settings

    store = SQLiteStore(tmp_path / "g.db")
    labels = {"metrics_experiments": ("clip-returns",), "metrics_variants": ("still",)}
    settings = load_settings(env={}, **labels)
    app = ExperimentsApp(settings, store=store, assigner=Assigner(load_definitions(defs_file)))
    server, channel = make_server(app, **labels)
    yield pb_grpc.ExperimentServiceStub(channel), store, server
    store.close()


def test_grpc_assign_get_and_report_exposure(service, assigner):
    stub, store, server = service
    r = stub.Assign(pb.AssignRequest(experiment=tags("clip-returns", "shopper-7")), timeout=10)
    want = assigner.assign("clip-returns", "shopper-7")
    assert r.variant == want.variant.name and r.bucket == want.bucket
    assert r.meta.experiment.variant == r.variant and r.meta.trace_id
    clip_unit = next(
        f"u{i}"
        for i in range(100)
        if assigner.assign("clip-returns", f"u{i}").variant.name == "clip"
    )
    r = stub.Assign(pb.AssignRequest(experiment=tags("clip-returns", clip_unit)), timeout=10)
    assert (
        r.recipe.output == pb.OUTPUT_STILL_AND_CLIP
        and r.recipe.motion_template == "idle-sway-upper"
    )
    assert not r.recipe.HasField("refine")
    g = stub.GetExperiment(pb.GetExperimentRequest(experiment=tags("clip-returns")), timeout=10)
    assert g.running and [v.name for v in g.experiment.variants] == ["still", "clip"]
    assert g.experiment.attribution_window_seconds == 7 * 86400
    assert g.experiment.variants[0].recipe.refine is True
    req = pb.ReportExposureRequest(
        request_id="view-1", experiment=tags("clip-returns", clip_unit), product_id="sku-1",
        time=to_timestamp(T0),
    )  # fmt: skip
    e = stub.ReportExposure(req, timeout=10)
    assert (e.variant, e.event_id, e.duplicate) == ("clip", "view-1", False)
    assert stub.ReportExposure(req, timeout=10).duplicate
    assert store.exposure_counts("clip-returns") == {"clip": (1, 1)}
    assigned = store.assigned_units("clip-returns")
    assert sum(assigned.values()) == 2 and assigned["clip"] >= 1
    # Metrics: the live experiment by name; an unlisted variant as "other".
    text = "\n".join(
        f"{s.name}{s.labels}={s.value}"
        for fam in server.metrics.registry.collect()
        for s in fam.samples
        if fam.name == "drape_experiment_exposures"
    )
    assert "'experiment': 'clip-returns', 'variant': 'other'}=1.0" in text


def tags(exp: str, unit: str = "", variant: str = ""):
    from drape.common.v1 import common_pb2

    return common_pb2.Experiment(experiment_id=exp, unit_id=unit, variant=variant)


def exposure(product: str = "p", time=None, **kw):
    req = pb.ReportExposureRequest(experiment=tags("clip-returns", "u", **kw), product_id=product)
    if time is not None:
        req.time.CopyFrom(to_timestamp(time))
    return req


@pytest.mark.parametrize(
    "request_, reason",
    [
        (pb.AssignRequest(experiment=tags("missing", "u")), "EXPERIMENT_NOT_FOUND"),
        (pb.AssignRequest(experiment=tags("clip-returns", "a b")), "INVALID_UNIT_ID"),
        (pb.AssignRequest(experiment=tags("clip-returns")), "INVALID_UNIT_ID"),
        (pb.AssignRequest(experiment=tags("ended", "u")), "EXPERIMENT_NOT_RUNNING"),
        (pb.AssignRequest(experiment=tags("x\n", "u")), "INVALID_EXPERIMENT_TAG"),
        (pb.AssignRequest(experiment=tags("clip-returns", "u", "zzz")), "VARIANT_MISMATCH"),
        (exposure(product=""), "PRODUCT_ID_INVALID"),
        (exposure(product="p q"), "PRODUCT_ID_INVALID"),
        (exposure(variant="zzz"), "VARIANT_MISMATCH"),
        (exposure(time=T0 * 3), "EXPOSURE_TIME_INVALID"),
        (exposure(time=1_500_000_000_000), "EXPERIMENT_NOT_RUNNING"),
    ],
)
def test_grpc_refusals(service, request_, reason):
    stub, store, _ = service
    call = stub.Assign if isinstance(request_, pb.AssignRequest) else stub.ReportExposure
    with pytest.raises(grpc.RpcError) as err:
        call(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(err.value) == reason
    assert store.exposure_counts("clip-returns") == {}
