"""The command line: drape motions, drape animate (template and refusal)."""

from __future__ import annotations

from PIL import Image
from skimage import data

from services.cli import main
from services.common.video import decode_video


def test_motions_lists_the_library(capsys):
    assert main(["motions", "--framing", "upper"]) == 0
    out = capsys.readouterr().out
    assert "upper-gestures" in out and "arms-open" in out and "step-and-pose" not in out


def test_animate_writes_clip_preview_and_poster(tmp_path, capsys):
    still = tmp_path / "still.png"
    Image.fromarray(data.astronaut()).save(still)
    clip, preview, poster = tmp_path / "c.mp4", tmp_path / "c.gif", tmp_path / "p.png"
    rc = main(["animate", str(still), "--motion", "idle-sway-upper", "-o", str(clip),
               "--size", "160x240", "--fps", "12", "--duration", "1", "--loop",
               "--preview", str(preview), "--poster", str(poster), "--quiet"])  # fmt: skip
    assert rc == 0
    v = decode_video(clip.read_bytes())
    assert (v.frame_count, v.width, v.height, round(v.fps)) == (12, 160, 240, 12)
    assert preview.read_bytes()[:6] == b"GIF89a"
    assert Image.open(poster).size == (160, 240)
    assert "12 frames" in capsys.readouterr().out
    rc = main(["animate", str(still), "--motion", "moonwalk", "-o", str(clip), "--quiet"])
    assert rc == 1 and "MOTION_NOT_FOUND" in capsys.readouterr().err
    rc = main(["animate", str(still), "--motion", "step-and-pose", "-o", str(clip), "--quiet"])
    assert rc == 1 and "MOTION_FRAMING_MISMATCH" in capsys.readouterr().err
