"""Model repository: manifests with SHA-256, and the start-up refusals that name the path."""

from __future__ import annotations

import json

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import ConfigError
from services.neural.repository import (
    MANIFEST,
    ModelRef,
    ModelRepositoryError,
    add_to_manifest,
    open_model,
    sha256_file,
    write_manifest,
)

REQUIRED = ("unet/config.json", "unet/weights.bin")


@pytest.fixture
def repo(tmp_path):
    d = tmp_path / "demo" / "2"
    (d / "unet").mkdir(parents=True)
    (d / "unet" / "config.json").write_text('{"in_channels": 9}')
    (d / "unet" / "weights.bin").write_bytes(bytes(range(256)) * 100)
    write_manifest(d, "demo", "2", "test-kind")
    return tmp_path


def test_manifest_lists_every_file_with_its_sha256(repo):
    d = repo / "demo" / "2"
    manifest = json.loads((d / MANIFEST).read_text())
    assert manifest["name"] == "demo" and manifest["kind"] == "test-kind"
    assert set(manifest["files"]) == set(REQUIRED)
    import hashlib

    want = hashlib.sha256(bytes(range(256)) * 100).hexdigest()
    assert manifest["files"]["unet/weights.bin"] == want == sha256_file(d / "unet/weights.bin")
    loaded = open_model(repo, ModelRef("demo", "2"), "test-kind", REQUIRED)
    assert loaded.version_label == "demo/2" and loaded.has("unet/weights.bin")


def test_missing_directory_names_the_path_and_the_files_expected(tmp_path):
    with pytest.raises(ModelRepositoryError) as err:
        open_model(tmp_path, ModelRef("demo", "9"), "test-kind", REQUIRED)
    msg = str(err.value)
    assert str(tmp_path / "demo" / "9") in msg and "unet/weights.bin" in msg
    assert err.value.setting == "DRAPE_MODEL_DIR" and isinstance(err.value, ConfigError)


def test_missing_manifest_says_how_to_write_it(repo):
    (repo / "demo" / "2" / MANIFEST).unlink()
    with pytest.raises(ModelRepositoryError, match="drape models manifest") as err:
        open_model(repo, ModelRef("demo", "2"), "test-kind", REQUIRED)
    assert err.value.path == repo / "demo" / "2" / MANIFEST


def test_missing_file_is_named(repo):
    (repo / "demo" / "2" / "unet" / "weights.bin").unlink()
    with pytest.raises(ModelRepositoryError, match="is missing") as err:
        open_model(repo, ModelRef("demo", "2"), "test-kind", REQUIRED)
    assert err.value.path == repo / "demo" / "2" / "unet" / "weights.bin"


def test_corrupted_file_is_named_with_both_checksums(repo):
    f = repo / "demo" / "2" / "unet" / "weights.bin"
    expected = sha256_file(f)
    data = bytearray(f.read_bytes())
    data[1234] ^= 0xFF  # one flipped byte
    f.write_bytes(bytes(data))
    with pytest.raises(ModelRepositoryError, match="corrupted") as err:
        open_model(repo, ModelRef("demo", "2"), "test-kind", REQUIRED)
    assert err.value.path == f and expected in str(err.value) and sha256_file(f) in str(err.value)
    # Presence-only checking does not hash, so it lets the corruption through.
    open_model(repo, ModelRef("demo", "2"), "test-kind", REQUIRED, verify=False)


def test_manifest_without_a_required_file_or_of_another_kind_is_refused(repo):
    with pytest.raises(ModelRepositoryError, match="does not list vae/config.json"):
        open_model(repo, ModelRef("demo", "2"), "test-kind", (*REQUIRED, "vae/config.json"))
    with pytest.raises(ModelRepositoryError, match="needs a 'other' model"):
        open_model(repo, ModelRef("demo", "2"), "other", REQUIRED)


def test_add_to_manifest_hashes_new_files(repo):
    d = repo / "demo" / "2"
    (d / "onnx").mkdir()
    (d / "onnx" / "g.onnx").write_bytes(b"graph")
    add_to_manifest(d, ["onnx/g.onnx"])
    loaded = open_model(repo, ModelRef("demo", "2"), "test-kind", REQUIRED)
    assert loaded.files["onnx/g.onnx"] == sha256_file(d / "onnx" / "g.onnx")


def test_model_ref_parsing():
    assert ModelRef.parse("catvton/1", "X") == ModelRef("catvton", "1")
    for bad in ("catvton", "a/b/c", "../etc/1", ""):
        with pytest.raises(ConfigError, match="expected name/version") as err:
            ModelRef.parse(bad, "DRAPE_TRYON_DIFFUSION_MODEL")
        assert err.value.setting == "DRAPE_TRYON_DIFFUSION_MODEL"


@pytest.mark.parametrize("damage", ["missing_dir", "corrupt_file"])
def test_tryon_server_refuses_to_start_and_stays_not_serving(tmp_path, make_server, damage):
    from services.common.config import load_settings
    from services.neural.configs import write_catvton_repository
    from services.tryon.server import TryOnApp

    bad = None
    if damage == "corrupt_file":
        d = write_catvton_repository(tmp_path)
        bad = d / "vae" / "diffusion_pytorch_model.safetensors"
        bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
    overrides = {"model_dir": str(tmp_path), "tryon_backend": "diffusion"}
    settings = load_settings(env={}, **overrides)
    server, channel = make_server(TryOnApp(settings), wait_ready=False, **overrides)
    assert not server.wait_ready(60)
    assert isinstance(server.load_error, ModelRepositoryError)
    want = bad if bad is not None else tmp_path / "catvton" / "1"
    assert str(want) in str(server.load_error)
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_drape_models_manifest_and_verify(repo, monkeypatch, capsys):
    from services.cli import main

    monkeypatch.setenv("DRAPE_MODEL_DIR", str(repo))
    d = repo / "demo" / "2"
    assert main(["models", "manifest", str(d), "--name", "demo", "--version", "2",
                 "--kind", "test-kind"]) == 0  # fmt: skip
    assert main(["models", "verify"]) == 0
    assert "demo/2: test-kind, 2 files, sha256 OK" in capsys.readouterr().out
    (d / "unet" / "config.json").write_text('{"in_channels": 4}')
    assert main(["models", "verify", "demo/2"]) == 2
    err = capsys.readouterr().err
    assert str(d / "unet" / "config.json") in err and "corrupted" in err
