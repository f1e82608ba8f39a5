"""The command line and the one-command set-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import samples

ROOT = Path(__file__).resolve().parents[1]
DRAPE = Path(sys.executable).parent / "drape"


def run(*args, **kw):
    return subprocess.run(
        [str(DRAPE), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, **kw
    )


def test_help_lists_subcommands():
    proc = run("--help")
    assert proc.returncode == 0
    for sub in ("demo", "serve", "stack", "config", "inspect"):
        assert sub in proc.stdout


def test_inspect_reports_and_refuses(tmp_path):
    good = tmp_path / "rotated.jpg"
    good.write_bytes(samples.exif_rotated_jpeg(6))
    proc = run("inspect", str(good))
    assert proc.returncode == 0 and "orientation=6 -> 48x64x3" in proc.stdout
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(samples.truncated(samples.jpeg(300, 200)))
    proc = run("inspect", str(bad))
    assert (
        proc.returncode == 1 and "IMAGE_TRUNCATED" in proc.stderr and "Traceback" not in proc.stderr
    )
    proc = run("inspect", str(tmp_path / "missing.jpg"))
    assert proc.returncode == 1 and "No such file" in proc.stderr


def test_config_markdown_covers_settings():
    proc = run("config", "--markdown")
    assert proc.returncode == 0 and "`DRAPE_MAX_IMAGE_PIXELS`" in proc.stdout


@pytest.mark.skipif(
    not (ROOT / ".venv").exists(), reason="set-up idempotence is checked on the make-built venv"
)
def test_second_setup_does_no_work():
    # `make -q` exits 0 only when the target is up to date, i.e. a second run has nothing to do.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    proc = subprocess.run(
        ["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_runs_end_to_end(tmp_path):
    proc = run("demo", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IMAGE_TOO_MANY_PIXELS" in proc.stdout and "exif=6 -> 512x600" in proc.stdout
    from PIL import Image

    sheet = Image.open(tmp_path / "demo_contact_sheet.png")
    assert sheet.width > 3 * 256 and sheet.height > 256  # four photos side by side
    assert (tmp_path / "demo" / "metrics.txt").read_text().count("drape_rpc_requests_total{") >= 2


def test_tryon_command(tmp_path):
    from PIL import Image
    from skimage import data

    from services.tryon.flatlays import draw_garment

    Image.fromarray(data.astronaut()).save(tmp_path / "me.jpg")
    Image.fromarray(draw_garment("tshirt", "logo").image).save(tmp_path / "tee.png")
    out = tmp_path / "out" / "still.jpg"
    proc = run(
        "tryon", str(tmp_path / "me.jpg"), str(tmp_path / "tee.png"), "-o", str(out),
        "--debug-dir", str(tmp_path / "dbg"), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "top/short" in proc.stdout
    still = Image.open(out)
    assert still.format == "JPEG" and still.size == (512, 512)
    for name in ("stages", "warp_grid", "person_regions", "garment_mask", "garment0_landmarks"):
        assert (tmp_path / "dbg" / f"{name}.png").exists()
    # A flat-lay with no garment is refused with the reason, not a traceback.
    Image.new("RGB", (300, 300), "white").save(tmp_path / "blank.png")
    proc = run(
        "tryon", str(tmp_path / "me.jpg"), str(tmp_path / "blank.png"), "-o", str(out), "--quiet"
    )
    assert (
        proc.returncode == 1
        and "GARMENT_NOT_FOUND" in proc.stderr
        and "Traceback" not in proc.stderr
    )
