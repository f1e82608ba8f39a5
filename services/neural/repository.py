"""The local model repository: operator-supplied weights, checked before anything loads.

Layout (one directory per model and version, Hugging Face ``diffusers`` layout inside)::

    <model_dir>/
      catvton/1/
        manifest.json                     # what must be here, with SHA-256 of every file
        unet/config.json
        unet/diffusion_pytorch_model.safetensors
        ...

``manifest.json``::

    {"name": "catvton", "version": "1", "kind": "tryon-catvton",
     "files": {"unet/config.json": "<sha256 hex>", ...}}

:func:`open_model` refuses (a :class:`ModelRepositoryError`, which stops start-up and keeps
health NOT_SERVING) a missing directory, a missing manifest, a manifest that lacks a file the
backend needs, a missing file and a checksum mismatch, each time naming the path and what was
expected. ``drape models manifest DIR`` writes the manifest of a directory an operator filled.
Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

from services.common.errors import ConfigError

MANIFEST = "manifest.json"
_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)$")
_CHUNK = 8 * 1024 * 1024


class ModelRepositoryError(ConfigError):
    """A model directory is missing, incomplete or corrupted (start-up error).

    Attributes:
        path: the file or directory at fault.
    """

    def __init__(self, path: Path | str, message: str, setting: str = "DRAPE_MODEL_DIR") -> None:
        super().__init__(setting, message)
        self.path = Path(path)


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """``name/version`` of a model in the repository, e.g. ``catvton/1``."""

    name: str
    version: str

    @classmethod
    def parse(cls, text: str, setting: str) -> ModelRef:
        """Parse ``name/version``.

        Raises:
            ConfigError: naming ``setting`` when ``text`` is not ``name/version``.
        """
        m = _REF_RE.match(text.strip())
        if not m:
            raise ConfigError(
                setting, f"invalid model {text!r}: expected name/version, e.g. catvton/1"
            )
        return cls(m.group(1), m.group(2))

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A verified model directory.

    Attributes:
        ref: name and version.
        path: the directory ``<model_dir>/<name>/<version>``.
        kind: what the manifest says the directory holds (e.g. ``tryon-catvton``).
        files: relative path -> SHA-256, as verified.
    """

    ref: ModelRef
    path: Path
    kind: str
    files: dict[str, str]

    def file(self, relative: str) -> Path:
        """Absolute path of a verified file."""
        return self.path / relative

    def has(self, relative: str) -> bool:
        """Whether the manifest lists (and verification found) ``relative``."""
        return relative in self.files

    @property
    def version_label(self) -> str:
        """``name/version`` for responses (``ResponseMeta.backend_version``)."""
        return str(self.ref)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 8 MiB chunks (multi-GB weights never sit in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _listing(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def write_manifest(
    directory: Path | str, name: str, version: str, kind: str, files: Iterable[str] | None = None
) -> Path:
    """Write ``manifest.json`` for ``directory`` (every file in it unless ``files`` is given).

    Args:
        directory: the model directory, ``<model_dir>/<name>/<version>``.
        name: model name.
        version: model version.
        kind: what the directory holds, checked by the backend that loads it.
        files: relative paths to list; default: every file below ``directory``.

    Returns:
        The manifest's path.
    """
    directory = Path(directory)
    rel = sorted(files) if files is not None else _listing(directory)
    manifest = {
        "name": name,
        "version": version,
        "kind": kind,
        "files": {r: sha256_file(directory / r) for r in rel},
    }
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def add_to_manifest(directory: Path | str, relative: Iterable[str]) -> None:
    """Add (or re-hash) files in an existing manifest, e.g. after an ONNX export."""
    directory = Path(directory)
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    for r in relative:
        manifest["files"][r] = sha256_file(directory / r)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def open_model(
    model_dir: Path | str,
    ref: ModelRef,
    kind: str,
    required: Iterable[str],
    setting: str = "DRAPE_MODEL_DIR",
    verify: bool = True,
) -> LoadedModel:
    """Check a model directory against its manifest and the files a backend needs.

    Args:
        model_dir: the repository root (``DRAPE_MODEL_DIR``).
        ref: which model and version.
        kind: the kind the backend loads; the manifest must say the same.
        required: files the backend cannot run without (they must be in the manifest).
        setting: the setting named in errors about ``ref`` itself.
        verify: hash every file (the default); False checks presence and sizes only.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        ModelRepositoryError: naming the path and what was expected, for a missing
            directory, manifest or file, a manifest of another model, and a checksum
            mismatch.
    """
    required = list(required)
    directory = Path(model_dir) / ref.name / ref.version
    expected = ", ".join(required)
    if not directory.is_dir():
        raise ModelRepositoryError(
            directory,
            f"model directory {directory} does not exist (model {ref} from {setting}); "
            f"expected a directory holding {MANIFEST} and {expected}",
        )
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ModelRepositoryError(
            manifest_path,
            f"{manifest_path} is missing; write it with `drape models manifest {directory} "
            f"--name {ref.name} --version {ref.version} --kind {kind}` after checking the "
            f"files ({expected})",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files = dict(manifest["files"])
        got_kind = str(manifest.get("kind", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelRepositoryError(
            manifest_path, f"{manifest_path} is not a valid manifest: {exc}"
        ) from None
    if got_kind != kind:
        raise ModelRepositoryError(
            manifest_path,
            f"{manifest_path} describes a {got_kind or 'model of no kind'!r} model; "
            f"{setting} needs a {kind!r} model",
        )
    for r in required:
        if r not in files:
            raise ModelRepositoryError(
                directory / r,
                f"{manifest_path} does not list {r}, which a {kind!r} model needs "
                f"(expected: {expected})",
            )
    for rel, digest in sorted(files.items()):
        path = directory / rel
        if not path.is_file():
            raise ModelRepositoryError(
                path, f"{path} is missing (listed in {manifest_path} with sha256 {digest})"
            )
        if verify:
            actual = sha256_file(path)
            if actual != digest:
                raise ModelRepositoryError(
                    path,
                    f"{path} is corrupted: sha256 {actual}, {manifest_path} expects {digest}",
                )
    return LoadedModel(ref=ref, path=directory, kind=kind, files=files)
