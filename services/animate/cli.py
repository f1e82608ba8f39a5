"""``drape animate``, ``drape motions`` and the clip step of ``drape tryon --animate``.

Registered into the ``drape`` parser by :func:`add_commands`; heavy imports happen inside
the commands so ``drape --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def add_commands(sub) -> None:
    """Add ``animate`` and ``motions`` to the ``drape`` subcommands."""
    p = sub.add_parser("animate", help="make a product clip of the person in a still")
    p.add_argument("still", help="the still (JPEG, PNG, WebP, BMP, TIFF), e.g. a try-on result")
    p.add_argument("--motion", default="idle-sway-upper",
                   help="template name (see `drape motions`) or a reference video (.mp4, .mov, "
                        ".webm, .mkv, .avi, .gif) to take the motion from")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="output clip (.mp4)")
    p.add_argument("--fps", type=float, default=0.0, help="frame rate (default: the motion's)")
    p.add_argument("--size", type=_size, default=(0, 0), metavar="WxH",
                   help="clip size, even numbers (default: the still's; 0 derives one side)")  # fmt: skip
    p.add_argument("--duration", type=float, default=0.0, help="seconds (default: one pass)")
    p.add_argument("--loop", action="store_true", help="make the last frame flow into the first")
    p.add_argument("--shadow", action="store_true", help="contact shadow (full-body stills)")
    p.add_argument("--preview", help="also write an animated preview (.webp or .gif)")
    p.add_argument("--poster", help="also write a poster frame (.jpg, .png or .webp)")
    p.add_argument("--debug-dir", help="write a contact sheet of frames with target poses here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("motions", help="list the motion templates")
    p.add_argument("--framing", choices=["upper", "full"], help="only motions of this framing")
    p.set_defaults(func=cmd_motions)


def cmd_motions(args: argparse.Namespace) -> int:
    from services.animate.motions import DEFAULT_MOTION, MotionLibrary
    from services.common.config import load_settings

    s = load_settings()
    lib = MotionLibrary(Path(s.animate_motion_dir) if s.animate_motion_dir else None)
    print(f"{'name':18} {'framing':8} {'seconds':>7} {'fps':>5} {'loops':5}  description")
    for m in lib.list(args.framing):
        star = " (default)" if m.name == DEFAULT_MOTION else ""
        print(
            f"{m.name:18} {m.framing:8} {m.duration:7.2f} {m.fps:5.0f} {str(m.loops).lower():5}"
            f"  {m.description}{star}"
        )
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from services.common.config import load_settings
    from services.common.images import ImageLimits, decode_image

    settings = load_settings()
    with open(args.still, "rb") as fh:
        still = decode_image(fh.read(), ImageLimits.from_settings(settings), field=args.still).rgb()
    return animate_still(
        still,
        args.motion,
        args.output,
        fps=args.fps,
        size=args.size,
        duration=args.duration,
        loop=args.loop,
        shadow=args.shadow,
        preview=args.preview,
        poster=args.poster,
        debug_dir=args.debug_dir,
        quiet=args.quiet,
        settings=settings,
    )


def animate_still(
    still: np.ndarray,
    motion: str,
    output: str,
    fps: float = 0.0,
    size: tuple[int, int] = (0, 0),
    duration: float = 0.0,
    loop: bool = False,
    shadow: bool = False,
    preview: str | None = None,
    poster: str | None = None,
    debug_dir: str | None = None,
    quiet: bool = False,
    settings=None,
    analyzer=None,
) -> int:
    """Make a clip of ``still`` in this process with a progress bar; writes ``output``."""
    from tqdm import tqdm

    from services.animate.extract import MotionExtractor
    from services.animate.motions import MotionLibrary
    from services.animate.pipeline import AnimatePipeline, ClipOptions, check_options
    from services.common.analysis.person import PersonAnalyzer
    from services.common.config import load_settings
    from services.common.video import VideoLimits, decode_video

    settings = settings or load_settings()
    lib = MotionLibrary(Path(settings.animate_motion_dir) if settings.animate_motion_dir else None)
    if Path(motion).suffix.lower() in (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif"):
        with open(motion, "rb") as fh:
            video = decode_video(fh.read(), VideoLimits.from_settings(settings), field=motion,
                                 max_side=640)  # fmt: skip
        extractor = MotionExtractor(
            settings.motion_max_seconds, settings.motion_max_lost_share, settings.animate_max_fps
        )
        m, gaps = extractor.extract(video, field=motion)
        print(f"motion from {motion}: {m.frame_count} frames at {m.fps:g} fps, {m.framing} body,"
              f" {gaps} interpolated", file=sys.stderr)  # fmt: skip
    else:
        m = lib.get(motion, field="--motion")
    fmt = Path(preview).suffix.lower().lstrip(".") if preview else None
    if fmt not in (None, "webp", "gif"):
        print("drape animate: --preview must end in .webp or .gif", file=sys.stderr)
        return 2
    poster_fmt = (
        {".png": "PNG", ".webp": "WEBP"}.get(Path(poster).suffix.lower(), "JPEG")
        if poster
        else "JPEG"
    )
    options = ClipOptions(
        fps=fps, width=size[0], height=size[1], duration=duration, loop=loop,
        contact_shadow=shadow, preview=fmt, poster=bool(poster), poster_format=poster_fmt,
        max_side=settings.animate_max_side, max_fps=settings.animate_max_fps,
    )  # fmt: skip
    check_options(options, settings.animate_max_seconds)
    bar = tqdm(total=0, desc="animate", unit="frame", disable=quiet)

    def progress(done: int, total: int, stage: str) -> None:
        if bar.total != total:
            bar.total = total
        bar.set_postfix_str(stage)
        bar.n = done
        bar.refresh()

    pipe = AnimatePipeline(analyzer or PersonAnalyzer())
    try:
        clip = pipe.run(still, m, options, progress=progress)
    finally:
        bar.close()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(clip.mp4)
    if preview and clip.preview:
        Path(preview).write_bytes(clip.preview)
    if poster and clip.poster:
        Path(poster).write_bytes(clip.poster)
    if debug_dir:
        write_debug(clip, Path(debug_dir))
    for reason, message in clip.warnings:
        print(f"warning: {reason}: {message}", file=sys.stderr)
    timing = " ".join(f"{k}={v * 1000:.0f}ms" for k, v in clip.timings.items())
    print(
        f"{out}: {clip.width}x{clip.height} {clip.fps:g} fps {clip.frame_count} frames "
        f"({clip.frame_count / clip.fps:.2f} s), motion {m.name}; {timing}"
    )
    return 0


def write_debug(clip, directory: Path) -> Path:
    """A contact sheet of eight frames of the clip with the target poses drawn on."""
    from PIL import Image

    from services.animate.debug import draw_pose, sheet
    from services.common.video import decode_video

    directory.mkdir(parents=True, exist_ok=True)
    frames = decode_video(clip.mp4).frames
    idx = np.linspace(0, len(frames) - 1, 8).astype(int)
    tiles = [draw_pose(frames[i], clip.targets.points[i], thickness=1) for i in idx]
    path = directory / "clip_contact_sheet.png"
    Image.fromarray(sheet(tiles, 4, 320)).save(path)
    return path
