"""The catalog adapter's clip step, in process: ``DRAPE_CATALOG_CLIP_RUNNER=
services.animate.catalog:make_clip_runner`` (the default).

A product event that asks for clips gets, per stock model, the model shot animated with the
event's motion template: an H.264 MP4, an animated WebP preview and a JPEG poster frame, on
the deployment's animate backend (``DRAPE_ANIMATE_BACKEND``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from drape.catalog.v1 import events_pb2 as cpb
from services.animate.backends import get_backend
from services.animate.motions import MotionLibrary
from services.animate.pipeline import AnimatePipeline, ClipOptions
from services.catalog_adapter.runners import MadeAsset
from services.common.context import CancelToken

DEFAULT_MOTION = "idle-sway-upper"  # fits half-body and full-body model shots alike
CLIP_HEIGHT = 768


class AnimateClipRunner:
    """Animates model shots for the catalog adapter (the ``ClipRunner`` protocol)."""

    def __init__(self, settings) -> None:
        from services.common.analysis.person import PersonAnalyzer

        self.settings = settings
        self.library = MotionLibrary(
            Path(settings.animate_motion_dir) if settings.animate_motion_dir else None
        )
        self.pipeline = AnimatePipeline(PersonAnalyzer())
        backend = get_backend("", settings.animate_backend, settings.animate_request_backends)
        self.backend, self.version = backend.name, backend.version

    def make_clip(
        self, still_png: bytes, model, motion_template: str, token: CancelToken
    ) -> list[MadeAsset]:
        """The clip, its preview and its poster for one model shot.

        Raises:
            InvalidInputError: MOTION_NOT_FOUND, MOTION_FRAMING_MISMATCH (a full-body
                motion on a half-body model shot), NO_PERSON_DETECTED.
            CancelledError: when ``token`` is cancelled (checked every frame).
        """
        still = np.asarray(Image.open(io.BytesIO(still_png)).convert("RGB"))
        motion = self.library.get(motion_template or DEFAULT_MOTION)
        height = min(CLIP_HEIGHT, still.shape[0] // 2 * 2)
        options = ClipOptions(height=height, preview="webp", poster=True)
        backend = get_backend(
            "", self.settings.animate_backend, self.settings.animate_request_backends
        )
        clip = self.pipeline.run(still, motion, options, token=token, backend=backend)
        out = [
            MadeAsset(cpb.ASSET_KIND_CLIP, clip.mp4, "video/mp4", "mp4", clip.width, clip.height)
        ]
        if clip.preview is not None:
            out.append(MadeAsset(cpb.ASSET_KIND_PREVIEW, clip.preview, "image/webp", "webp"))
        if clip.poster is not None:
            out.append(
                MadeAsset(
                    cpb.ASSET_KIND_POSTER, clip.poster, "image/jpeg", "jpg", clip.width, clip.height
                )
            )
        return out


def make_clip_runner(settings) -> AnimateClipRunner:
    """``DRAPE_CATALOG_CLIP_RUNNER`` factory."""
    return AnimateClipRunner(settings)
