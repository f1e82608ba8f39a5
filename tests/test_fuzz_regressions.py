"""What the fuzz targets in ``benchmarks/fuzz`` found, kept as tests, and the targets' own
seeds run through them (so that ``make fuzz`` cannot rot unnoticed).

Each regression test holds the smallest input the fuzzer found (or one built to the same
shape) and asserts the exact refusal that replaced the crash.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz"


@pytest.mark.parametrize("target", ["images", "video", "requests"])
def test_fuzz_target_passes_its_own_seeds(target):
    """Every seed runs through the target without a finding. In a child process: a target
    instruments the modules it imports, which must not leak into this test session."""
    proc = subprocess.run(
        [sys.executable, str(FUZZ_DIR / f"fuzz_{target}.py"), "--check-seeds"],
        cwd=FUZZ_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seeds = int(re.search(rf"^{target}: (\d+) seeds, no finding$", proc.stdout, re.M).group(1))
    assert seeds >= 10


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, str(FUZZ_DIR))
    try:
        import _harness  # imports nothing that is instrumented

        yield _harness
    finally:
        sys.path.remove(str(FUZZ_DIR))


def test_fuzz_finding_outside_the_contract_is_raised(harness):
    """The harness's verdicts: a refusal passes; a refusal without a field, our own
    InternalError and any other exception are findings."""
    _harness = harness
    from services.common.errors import InternalError, InvalidInputError

    def refuse(field):
        raise InvalidInputError("IMAGE_EMPTY", "empty", field=field)

    assert _harness.refused(refuse, "image.data").reason == "IMAGE_EMPTY"
    with pytest.raises(_harness.Finding):
        _harness.refused(refuse, None)
    with pytest.raises(InternalError):
        _harness.refused(lambda: (_ for _ in ()).throw(InternalError("X_Y", "ours")))
    with pytest.raises(KeyError):
        _harness.refused(lambda: {}["missing"])


# --------------------------------------------------------------------------- video


def test_video_with_a_codec_ffmpeg_cannot_decode_is_refused():
    """fuzz_video, first run: an MP4 whose sample entry names an unknown codec has a video
    stream without a codec context; decode_video read ``ctx.width`` of None
    (AttributeError, INTERNAL over gRPC)."""
    import io

    import av
    import numpy as np

    from services.common.errors import InvalidInputError
    from services.common.video import decode_video, encode_mp4

    mp4 = encode_mp4([np.zeros((16, 16, 3), np.uint8)] * 2, 8.0)
    bad = mp4.replace(b"avc1", b"zzzz")  # the sample entry's codec fourcc
    with av.open(io.BytesIO(bad), format="mp4") as c:
        assert c.streams.video[0].codec_context is None  # the path that crashed
    with pytest.raises(InvalidInputError) as ei:
        decode_video(bad, field="motion_video.data")
    assert ei.value.reason == "VIDEO_CODEC_UNSUPPORTED"
    assert ei.value.field == "motion_video.data"


def _vp8_clip_changing_size() -> bytes:
    """A WebM whose VP8 stream switches from 32 x 32 to 32 x 40 at its fourth frame (a new
    key frame with new dimensions), muxed from two encodes."""
    import io
    from fractions import Fraction

    import av
    import numpy as np

    def packets(h: int, w: int, start: int) -> list:
        enc = av.CodecContext.create("libvpx", "w")
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base = Fraction(1, 8)
        out = []
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i, np.uint8), "rgb24")
            frame.pts = i
            out += enc.encode(frame)
        out += enc.encode(None)
        for p in out:
            p.pts += start
            p.dts += start
        return out

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="webm") as c:
        stream = c.add_stream("libvpx", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for p in packets(32, 32, 0) + packets(40, 32, 3):
            p.stream = stream
            p.time_base = Fraction(1, 8)
            c.mux(p)
    return buf.getvalue()


def test_video_whose_frames_change_size_is_refused():
    """fuzz_video, second run: a VP8 stream that changes resolution at a key frame decoded
    to frames of two sizes, and ``np.stack`` raised ValueError (INTERNAL over gRPC)."""
    from services.common.errors import InvalidInputError
    from services.common.video import decode_video

    with pytest.raises(InvalidInputError) as ei:
        decode_video(_vp8_clip_changing_size(), field="video.data")
    assert ei.value.reason == "VIDEO_FRAME_SIZE_CHANGES"
    assert ei.value.field == "video.data"
    assert "frame 3 is 32 x 40" in ei.value.message
