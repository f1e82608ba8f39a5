"""The contracts: generated code is current, and the proto conventions hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from services.common import protogen

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_current():
    stale = protogen.stale_files()
    assert not stale, f"run `make proto` and commit: {stale}"


@pytest.fixture(scope="module")
def fileset(tmp_path_factory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("desc") / "set.pb"
    from grpc_tools import protoc

    files = [str(p.relative_to(protogen.PROTO_DIR)) for p in protogen.proto_files()]
    args = [
        "protoc",
        *(f"-I{d}" for d in protogen._include_dirs()),
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *files,
    ]
    assert protoc.main(args) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_directory_is_package_is_version(fileset):
    for f in fileset.file:
        assert f.package == str(Path(f.name).parent).replace("/", "."), f.name
        assert f.package.startswith("drape.") and f.package.endswith(".v1")
    packages = {f.package for f in fileset.file}
    assert {
        "drape.common.v1",
        "drape.tryon.v1",
        "drape.refiner.v1",
        "drape.animate.v1",
        "drape.catalog.v1",
    } <= packages


def _declarations(f: descriptor_pb2.FileDescriptorProto):
    """(path, name) of every message, field, enum, enum value, service and RPC."""

    def messages(msgs, path, prefix):
        for i, m in enumerate(msgs):
            p = (*path, i)
            yield p, f"{prefix}{m.name}"
            for j, fld in enumerate(m.field):
                yield (*p, 2, j), f"{prefix}{m.name}.{fld.name}"
            yield from messages(m.nested_type, (*p, 3), f"{prefix}{m.name}.")
            yield from enums(m.enum_type, (*p, 4), f"{prefix}{m.name}.")

    def enums(es, path, prefix):
        for i, e in enumerate(es):
            yield (*path, i), f"{prefix}{e.name}"
            for j, v in enumerate(e.value):
                yield (*path, i, 2, j), f"{prefix}{e.name}.{v.name}"

    yield from messages(f.message_type, (4,), "")
    yield from enums(f.enum_type, (5,), "")
    for i, s in enumerate(f.service):
        yield (6, i), s.name
        for j, m in enumerate(s.method):
            yield (6, i, 2, j), f"{s.name}.{m.name}"


def test_everything_is_documented(fileset):
    undocumented = []
    for f in fileset.file:
        comments = {
            tuple(loc.path): loc.leading_comments.strip() for loc in f.source_code_info.location
        }
        undocumented += [
            f"{f.name}: {name}" for path, name in _declarations(f) if not comments.get(path)
        ]
    assert not undocumented, undocumented


def test_enum_zero_values_are_unspecified(fileset):
    def all_enums(f):
        yield from f.enum_type
        stack = list(f.message_type)
        while stack:
            m = stack.pop()
            yield from m.enum_type
            stack.extend(m.nested_type)

    for f in fileset.file:
        for e in all_enums(f):
            zero = [v.name for v in e.value if v.number == 0]
            assert zero and zero[0].endswith("_UNSPECIFIED"), f"{f.name}: {e.name}"


def test_requests_carry_request_id_and_experiment(fileset):
    for f in fileset.file:
        for m in f.message_type:
            if m.name.endswith("Request"):
                names = {fld.name: fld for fld in m.field}
                assert "request_id" in names, f"{f.name}: {m.name}"
                assert names["experiment"].type_name == ".drape.common.v1.Experiment", (
                    f"{f.name}: {m.name}"
                )


def test_long_running_shape(fileset):
    methods = {f"{s.name}.{m.name}": m for f in fileset.file for s in f.service for m in s.method}
    for service, noun in [("AnimateService", "Clip"), ("CatalogService", "Batch")]:
        start = methods[f"{service}.Start{noun}"]
        assert start.output_type == ".drape.common.v1.Operation"
        watch = methods[f"{service}.Watch{noun}"]
        assert watch.server_streaming and watch.input_type == ".drape.common.v1.OperationRef"
        assert f"{service}.Get{noun}" in methods
        assert methods[f"{service}.Cancel{noun}"].output_type == ".drape.common.v1.Operation"


def test_make_proto_check_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "services.common.protogen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generation_leaves_byte_code_folders_alone(tmp_path):
    # `make proto` generates in place, where Python has left __pycache__ folders: they are
    # no packages, and an __init__.py there would make the freshness check fail.
    cache = tmp_path / "drape" / "common" / "v1" / "__pycache__"
    cache.mkdir(parents=True)
    protogen.generate(tmp_path)
    assert (tmp_path / "drape" / "common" / "v1" / "__init__.py").exists()
    assert not (cache / "__init__.py").exists()
