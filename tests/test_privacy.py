"""Privacy by default: a shopper's photo and the results made from it (the still, the clip
and its poster) are not written to disk or logs anywhere in the path unless an operator
turns retention on (``DRAPE_OPERATION_STORE``, see README "Privacy").

The test runs what a shopper does on the product page (upload a photo for a gallery
garment, have a truncated copy refused, make a clip of the still, follow its progress,
fetch the video and poster) through the gateway and the services, on real servers with
the default settings, every logger at DEBUG, stdout/stderr captured at the file
descriptors and a fresh TMPDIR. The photo is unique to the run (noise over all of it, and
over 1 MiB, where Starlette would spool an upload to disk), so any 30-byte window of its
JPEG or pixels, or of the results, found anywhere came from this run. The test then looks
for such windows, raw and as base64, hex, Python and protobuf text escapes, in:

- every log record (formatted as the services format them), stdout and stderr;
- every file modified since the run began under TMPDIR, the working tree (not .git or
  .venv), /tmp, /dev/shm and ~/.cache;
- every file Python code opened for writing during the run (an audit hook sees files that
  were written and deleted again, which a scan afterwards cannot).

Positive controls show that the scanner finds a window written to a file and one logged
as a protobuf message's text (``log.debug("%s", request)``), so a broken scanner fails.
A second test turns retention on and shows the clip lands in the store, and only there.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from google.protobuf import text_encoding
from PIL import Image
from skimage import data

from drape.common.v1 import common_pb2
from services.common.logs import JsonFormatter, TextFormatter

from helpers import storefront

REPO = Path(__file__).resolve().parent.parent
# Bytes of one needle: no two unrelated files share 30 bytes of compressed data or noisy
# pixels; a multiple of 3, so a window's base64 is a whole number of groups.
WINDOW = 30
MAX_SCAN_BYTES = 200 * 1024 * 1024
SKIP_DIRS = {REPO / ".git", REPO / ".venv"}


# --------------------------------------------------------------------------- the needles


@dataclasses.dataclass(frozen=True)
class Needle:
    """One window of a secret in one encoding."""

    label: str  # e.g. "photo.jpeg@1234/base64"
    text: str  # the encoded window as text (for logs)
    raw: bytes  # what a file holding it would contain


def _escape_py(window: bytes) -> str:
    """The window as Python's ``repr`` of bytes spells it inside the quotes."""
    return repr(window)[2:-1]


def _offsets(blob: bytes, start: int, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` window offsets in ``blob[start:]``, multiples of 3 (so the window's base64 is a
    substring of the whole blob's), on windows without quotes (so the Python repr of a
    window is a substring of the blob's) and with varied bytes (not a flat run)."""
    out: list[int] = []
    for _ in range(200 * n):
        if len(out) == n:
            break
        off = -(-int(rng.integers(start, len(blob) - 2 * WINDOW)) // 3) * 3  # rounded up
        w = blob[off : off + WINDOW]
        if b"'" in w or b'"' in w or len(set(w)) < 16:
            continue
        out.append(off)
    assert len(out) == n, f"no {n} usable windows in a {len(blob)}-byte blob"
    return out


def needles_of(name: str, blob: bytes, start: int, n: int, rng) -> list[Needle]:
    """Needles for ``n`` windows of ``blob`` (from ``start``: past headers that every file
    of the format shares), each raw, base64 (standard and URL-safe), hex, Python-escaped
    and protobuf-text-escaped (what ``"%s" % message`` prints for a bytes field)."""
    out: list[Needle] = []
    for off in _offsets(blob, start, n, rng):
        w = blob[off : off + WINDOW]
        forms = {
            "raw": w.decode("latin-1"),
            "base64": base64.b64encode(w).decode(),
            "base64url": base64.urlsafe_b64encode(w).decode(),
            "hex": w.hex(),
            "HEX": w.hex().upper(),
            "pyrepr": _escape_py(w),
            "proto-text": text_encoding.CEscape(w, as_utf8=False),
        }
        for form, text in forms.items():
            raw = w if form == "raw" else text.encode("ascii")
            out.append(Needle(f"{name}@{off}/{form}", text, raw))
    return out


def jpeg_data_start(blob: bytes, after: int = 0) -> int:
    """Where a JPEG's entropy-coded data begins (after the start-of-scan header): the
    tables before it are alike in every JPEG of one quality. ``after``: the length of the
    segments before the tables (they may hold the marker's bytes by chance)."""
    sos = blob.find(b"\xff\xda", after)
    assert sos > 0, "not a baseline JPEG"
    return sos + 2 + int.from_bytes(blob[sos + 2 : sos + 4], "big")


def mp4_data_start(blob: bytes) -> int:
    """Where an MP4's media data begins."""
    mdat = blob.find(b"mdat")
    assert mdat > 0, "no mdat box"
    return mdat + 4 + 64


def rgb_of(blob: bytes) -> bytes:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).tobytes()


# --------------------------------------------------------------------------- the scanner


def scan_text(sources: dict[str, str], needles: list[Needle]) -> list[str]:
    """``"needle in source"`` for each needle found in each named text."""
    return [
        f"{n.label} in {name}" for name, text in sources.items() for n in needles if n.text in text
    ]


def _walk(root: Path, since: float, out: list[Path]) -> None:
    """Regular files under ``root`` modified at or after ``since``; symlinks not followed,
    other file systems not entered, unreadable directories skipped."""
    try:
        root_dev = root.stat().st_dev
    except OSError:
        return
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.is_dir(follow_symlinks=False):
                p = Path(e.path)
                if p not in SKIP_DIRS and st.st_dev == root_dev:
                    stack.append(p)
            elif e.is_file(follow_symlinks=False) and max(st.st_mtime, st.st_ctime) >= since:
                out.append(Path(e.path))


def scan_files(roots: list[Path], since: float, needles: list[Needle]) -> tuple[list[str], int]:
    """``("needle in path" findings, files read)`` over the files modified since ``since``
    under ``roots`` (files over :data:`MAX_SCAN_BYTES` are skipped)."""
    files: list[Path] = []
    for root in dict.fromkeys(roots):
        _walk(root, since, files)
    found: list[str] = []
    read = 0
    for path in dict.fromkeys(files):
        try:
            if path.stat().st_size > MAX_SCAN_BYTES:
                continue
            blob = path.read_bytes()
        except OSError:
            continue  # removed meanwhile (other processes use /tmp), or not ours to read
        read += 1
        found += [f"{n.label} in {path}" for n in needles if n.raw in blob]
    return found, read


def scan_roots(tmpdir: Path) -> list[Path]:
    roots = [tmpdir, REPO, Path("/tmp"), Path("/dev/shm"), Path.home() / ".cache"]
    return [r for r in roots if r.is_dir()]


# --------------------------------------------------------------------------- the watchers


class LogRecorder(logging.Handler):
    """Keeps every record; :meth:`texts` renders them as the services' formatters do (JSON
    and text lines) and as the bare message, so nothing a handler could print is missed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> str:
        parts = []
        for fmt in (JsonFormatter(), TextFormatter(), logging.Formatter()):
            for r in self.records:
                try:
                    parts.append(fmt.format(r))
                except Exception as exc:  # noqa: BLE001 - a record that cannot format is a finding too
                    parts.append(f"<unformattable record {r.name}: {exc!r}>")
        for r in self.records:
            parts.append(r.getMessage())
        return "\n".join(parts)


@contextlib.contextmanager
def all_logs_at_debug():
    """Every logger (existing and new) at DEBUG and enabled, a :class:`LogRecorder` on the
    root and on loggers that do not propagate; restored on exit."""
    rec = LogRecorder()
    root = logging.getLogger()
    saved = [(root, root.level, root.disabled)]
    root.setLevel(logging.DEBUG)
    root.addHandler(rec)
    extra = []
    for lg in list(logging.root.manager.loggerDict.values()):
        if isinstance(lg, logging.Logger):
            saved.append((lg, lg.level, lg.disabled))
            lg.setLevel(logging.DEBUG)
            lg.disabled = False
            if not lg.propagate:
                lg.addHandler(rec)
                extra.append(lg)
    try:
        yield rec
    finally:
        root.removeHandler(rec)
        for lg in extra:
            lg.removeHandler(rec)
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled


# An audit hook cannot be removed: one is installed for the process and records only while
# a test has a list in _WRITES.
_WRITES: list[list[str]] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple) -> None:
    if not _WRITES:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        name = os.fsdecode(path)
        if name == os.devnull or "__pycache__" in name:  # subprocess plumbing, bytecode
            return
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & _WRITE_FLAGS
        if writes:
            _WRITES[-1].append(f"open({name}, {mode or flags})")
    elif event in ("tempfile.mkstemp", "shutil.copyfile"):
        _WRITES[-1].append(f"{event}{args!r}")


_HOOKED = False


@contextlib.contextmanager
def python_writes():
    """The files Python code opened for writing (and temporary files and directories it
    made) while the block ran, on any thread."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    seen: list[str] = []
    _WRITES.append(seen)
    try:
        yield seen
    finally:
        _WRITES.remove(seen)


@pytest.fixture
def fresh_tmpdir(monkeypatch):
    """A new, empty TMPDIR for the test (``tempfile.tempdir`` too: it is cached)."""
    d = Path(tempfile.mkdtemp(prefix="drape-privacy-"))
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
    d.rmdir()


# --------------------------------------------------------------------------- the session


def shopper_photo(rng: np.random.Generator) -> bytes:
    """The astronaut with faint noise all over and a noisy corner, as a JPEG made in
    memory: bytes and pixels that exist nowhere else. Padded past 1 MiB with comment
    segments of random bytes (a phone photo's EXIF, thumbnails and depth maps are that
    big): Starlette's own form parser would spool such an upload to a temporary file."""
    px = data.astronaut().astype(np.int16)
    px += rng.integers(-3, 4, px.shape, dtype=np.int16)
    px[:24, -24:] = rng.integers(0, 256, (24, 24, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    jpeg = buf.getvalue()
    pad = rng.integers(0, 256, (PAD_SEGMENTS, 65533), dtype=np.uint8)
    com = b"".join(b"\xff\xfe" + (65535).to_bytes(2, "big") + row.tobytes() for row in pad)
    return jpeg[:2] + com + jpeg[2:]  # after the start-of-image marker


PAD_SEGMENTS = 18  # 1.1 MiB of comments
PADDING = 2 + PAD_SEGMENTS * 65537  # bytes before the photo's own tables


@dataclasses.dataclass
class Session:
    photo: bytes
    still: bytes
    clip: bytes
    poster: bytes
    clip_id: str


@contextlib.contextmanager
def stack(**overrides):
    """The services (try-on, refiner, animate) on a gRPC server and the gateway in front of
    them on free loopback ports, with the default settings but ``overrides`` and a short
    clip; yields the gateway's URL."""
    short = {"gateway_clip_seconds": 1.0, "gateway_clip_max_side": 256}
    with storefront(**(short | overrides)) as (_settings, _channel, gateway):
        yield gateway.url


def _events(response: requests.Response) -> list[tuple[str, dict]]:
    """The ``(event, data)`` pairs of a server-sent event stream, to its end."""
    out, event = [], ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            out.append((event, json.loads(line[6:])))
    return out


def run_session(url: str, photo: bytes) -> Session:
    """What a shopper does on the product page, over HTTP: pick a gallery garment, upload
    the photo (JPEG still back), upload a truncated copy (refused), make a clip of the
    still, follow its progress, fetch the video (whole and a range), the poster and the
    status."""
    http = requests.Session()
    deadline = time.monotonic() + 120
    while not (garments := http.get(f"{url}/v1/garments", timeout=30).json()["garments"]):
        assert time.monotonic() < deadline, "the gateway registered no gallery garment"
        time.sleep(0.2)
    top = next(g for g in garments if g["category"] == "TOP")
    r = http.post(
        f"{url}/v1/tryon",
        files={"photo": ("me.jpg", photo, "image/jpeg")},
        data={"garment_id": top["id"]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    still = base64.b64decode(r.json()["still"]["data"])
    r = http.post(
        f"{url}/v1/tryon",
        files={"photo": ("me.jpg", photo[: (PADDING + len(photo)) // 2], "image/jpeg")},
        data={"garment_id": top["id"]},
        timeout=120,
    )
    assert r.status_code in (400, 422) and r.json()["reason"], r.text
    r = http.post(
        f"{url}/v1/clips", files={"still": ("still.jpg", still, "image/jpeg")}, timeout=60
    )
    assert r.status_code == 202, r.text
    clip = r.json()
    with http.get(f"{url}{clip['events_url']}", stream=True, timeout=180) as events:
        final = _events(events)[-1]
    assert final[0] == "done", final
    video = http.get(f"{url}{clip['video_url']}", timeout=60).content
    part = http.get(f"{url}{clip['video_url']}", headers={"Range": "bytes=100-"}, timeout=60)
    assert part.status_code == 206 and part.content == video[100:]
    poster = http.get(f"{url}{clip['poster_url']}", timeout=60).content
    assert http.get(f"{url}{clip['status_url']}", timeout=60).json()["state"] == "SUCCEEDED"
    return Session(photo, still, video, poster, clip["id"])


def session_needles(s: Session, rng) -> dict[str, list[Needle]]:
    """Needles per secret: the photo (its JPEG data, its padding and its pixels), the
    still (JPEG and pixels), the clip's MP4 and poster."""
    return {
        "photo": needles_of("photo.jpeg", s.photo, jpeg_data_start(s.photo, PADDING), 8, rng)
        + needles_of("photo.padding", s.photo[:PADDING], 6, 4, rng)
        + needles_of("photo.rgb", rgb_of(s.photo), 0, 8, rng),
        "still": needles_of("still.jpeg", s.still, jpeg_data_start(s.still), 8, rng)
        + needles_of("still.rgb", rgb_of(s.still), 0, 8, rng),
        "clip": needles_of("clip.mp4", s.clip, mp4_data_start(s.clip), 8, rng)
        + needles_of("poster.jpeg", s.poster, jpeg_data_start(s.poster), 4, rng),
    }


# --------------------------------------------------------------------------- the tests


def test_nothing_of_the_shopper_reaches_disk_or_logs(fresh_tmpdir, capfd):
    rng = np.random.default_rng()  # unseeded: the photo is new on every run
    photo = shopper_photo(rng)
    t0 = time.time() - 1.0  # file times may be coarser than time.time()
    with all_logs_at_debug() as logs, python_writes() as writes, stack() as url:
        session = run_session(url, photo)
    out, err = capfd.readouterr()
    needles = [n for group in session_needles(session, rng).values() for n in group]

    texts = {"logs": logs.texts(), "stdout": out, "stderr": err}
    found = scan_text(texts, needles)
    files_found, files_read = scan_files(scan_roots(fresh_tmpdir), t0, needles)
    # ONNX Runtime writes $TMPDIR/.ses when it is imported: its telemetry session (a time
    # and a random UUID). Scanned like every other file; not the shopper's.
    leftovers = [str(p) for p in fresh_tmpdir.rglob("*") if p.name != ".ses"]
    print(
        f"scanned {len(logs.records)} log records, {len(out) + len(err)} characters of "
        f"stdout/stderr and {files_read} files modified since the start for {len(needles)} "
        f"needles; Python opened for writing: {writes}"
    )
    assert logs.records, "no log record was captured: the log watcher is broken"
    assert not found, "the shopper's media in the logs or output:\n" + "\n".join(found[:40])
    assert not files_found, "the shopper's media on disk:\n" + "\n".join(files_found[:40])
    assert not writes, f"files written during the session: {writes}"
    assert not leftovers, f"files left in TMPDIR: {leftovers}"

    # Positive controls: the same scanner, fed a window written to a file in the scanned
    # TMPDIR and a request logged the careless way, finds both.
    (fresh_tmpdir / "control.bin").write_bytes(b"prefix" + session.photo + b"suffix")
    with all_logs_at_debug() as control_logs:
        logging.getLogger("drape.control").debug("request %s", common_pb2.Image(data=session.still))
    control_files, _ = scan_files([fresh_tmpdir], t0, needles)
    control_text = scan_text({"control-log": control_logs.texts()}, needles)
    assert any("photo.jpeg" in f and "/raw in " in f for f in control_files), control_files
    assert any("still.jpeg" in f and "/proto-text in " in f for f in control_text), control_text
    with python_writes() as control_writes, tempfile.NamedTemporaryFile():
        pass
    assert control_writes, "the write watcher saw no temporary file"


def test_retention_keeps_the_clip_in_the_operation_store_only(fresh_tmpdir, capfd, tmp_path):
    # tmp_path exists before t0, so the only new files in it are the store's.
    store = tmp_path / "operations-store"
    rng = np.random.default_rng()
    photo = shopper_photo(rng)
    t0 = time.time() - 1.0
    with all_logs_at_debug() as logs, stack(operation_store=f"file://{store}") as url:
        session = run_session(url, photo)
    out, err = capfd.readouterr()
    groups = session_needles(session, rng)
    needles = [n for group in groups.values() for n in group]

    kept, _ = scan_files([store], t0, groups["clip"])
    assert any(f"operations/ops/{session.clip_id}.result" in f for f in kept), kept
    assert {f.split("@", 1)[0] for f in kept} == {"clip.mp4", "poster.jpeg"}, kept
    # The store holds the result (clip, preview, poster), never the photo or the still.
    photo_in_store, _ = scan_files([store], t0, groups["photo"] + groups["still"])
    assert not photo_in_store, photo_in_store
    # ... and nothing lands anywhere else, nor in the logs.
    elsewhere, _ = scan_files(scan_roots(fresh_tmpdir), t0, needles)
    elsewhere = [f for f in elsewhere if str(store) not in f]
    assert not elsewhere, "\n".join(elsewhere[:40])
    texts = {"logs": logs.texts(), "stdout": out, "stderr": err}
    assert not scan_text(texts, needles)
