"""What the fuzz targets in ``benchmarks/fuzz`` found, kept as tests, and the targets' own
seeds run through them (so that ``make fuzz`` cannot rot unnoticed).

Each regression test holds the smallest input the fuzzer found (or one built to the same
shape) and asserts the exact refusal that replaced the crash.
"""

from __future__ import annotations

import base64
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


# The input fuzz_video found (876 bytes, kept as found): a WebM whose first VP8 key frame
# sends FFmpeg's slice-threaded decoder into an endless loop inside avcodec_send_packet.
VP8_SLICE_THREAD_HANG = base64.b64decode(
    "GkXfo59ChoEBQveBAULygQRC84EIQoKEd2VibUKHgQJChYECGFOAZwEAAAAARImIQIdwAAAAAAAWVK5rvq4BAAAA"
    "AAAANdeBAXOcgQAitZyDdW5kiIEAhoVWX1ZQOIOBASPjgy43NTAwMDAwMDAAH0O2dUGF54EAo0CQgQAAgDAGAJ0B"
    "KiAAIAASRzAwGkXfo59ChoEBQveBAULygQRC84EIQoKEd2VibUKHgQJChYECAAAAAAADGRFNQAAAAAAWMAAfQ7Z1"
    "QYXngQCjQJCBAACAMCoGAZ0AIAAgAAJHCIWFiIWEiAICAnW6JNzeA/iT+s1WD7gfsB3//P9Urmu+rgEAAAAAAAA1"
    "14EBc8WIyAQgVqeWOpicgQAitZyDdW5kgIEAhoVWX1ZQOIOBAUVOQ09ERVJEhzAwMDAAH0O2dUGF54EAo0CQgQAA"
    "gDAGAJ0BKiAAMAADRwiFhYiFhIgCAgJ1uiTc/dAYQDWAXGDHaOKEvu2Z5G8A/v/+aYOe4pzV5MpjaVmb/+6GKxZc"
    "PXct/4qoT//MHzG/c/xGYH/qlWmdhsiHUeNRbzGsUv/nKg1vsyV3uLdS5IAAAAAAAAEiUklGRgAAAAAAo6qBAH0A"
    "cQIACRCsABgHb/qGgeSf/2AJOmnSAP6k0n0X/XpiFF1Dh9UD1YCjs4EA+gDRAQANEKwAGAAxLf/0ALW8AP6QQVA8"
    "Dl/Hu10IuEfGXCw1I7Zee/w83jIDGAdvIE5Eh5MwMDowMDolMDAwMQAfQ7Z1QYXngQCjQJCB+QCAMAYAnQEqJwAg"
    "AAJHCIVSSUZGiAICAnW6JNzeA/iT+s1WD7gfsB3//P/9e1unMKN8AKO1gQF3ABECAA0QrAAYADAt//QA0AOraAD+"
    "ZcRZecI/U3BEB8jkZAfdFlZwZAAQ9C2bm/CjEYCjrYEB9ABxAgANEKwAGAtRxkmE7v+RCrqzmuQA+7KyeQ+FFaSh"
    "dTxJCzcbmhYAAKOmgQJxADECAA0QrAAY0BhANQAqSf+AXGDHaOKEvu2Z5G8A/v/+aZv/7oYrFgAAAAAAXD13Lf+o"
    "T//MHzG/c/xGYIHqlWn0ASX3RFBOu4+zgQC3ip2GyPeBAfGCAXjwgYdR41FvMaxS/+cxwAADFFO7gQC3ALeK94EB"
    "iveBAfGCAXjwgQPxggV48IED"
)


def test_video_that_hangs_the_threaded_vp8_decoder_is_decoded_at_once():
    """fuzz_video, third run: decode_video never returned on this WebM (libFuzzer
    "timeout"; native code with the GIL released, so a server thread would spin for good).
    Decoding with one thread reads it. In a child process, so that a regression fails the
    test instead of hanging the suite."""
    code = (
        "import sys\n"
        "from services.common.errors import InvalidInputError\n"
        "from services.common.video import decode_video\n"
        "try:\n"
        "    v = decode_video(sys.stdin.buffer.read(), field='video.data')\n"
        "    print('frames', v.frame_count, v.width, v.height)\n"
        "except InvalidInputError as err:\n"
        "    print('refused', err.reason)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=VP8_SLICE_THREAD_HANG, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The first key frame decodes; the second is damaged, which ends the clip there (a
    # damaged tail keeps the frames before it).
    assert proc.stdout.decode().split() == ["frames", "1", "32", "32"]
