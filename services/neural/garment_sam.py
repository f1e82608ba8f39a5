"""Garment masks with Segment Anything, for flat-lays on busy backgrounds.

The classical cut-out (:func:`services.common.analysis.garment.segment_garment`) separates a
garment from a plain backdrop by colour; on a patterned table or a bed sheet it finds the
garment's rough extent but a ragged edge. SAM, prompted by that cut-out's box and a few
points deep inside it, returns the garment's outline. Same contract as the classical
function: ``H x W x 3|4`` uint8 in, ``H x W`` float32 alpha in 0..1 out.

Weight directory (``<model_dir>/<name>/<version>/``, kind ``garment-sam``): ``config.json``
(``{"variant": "vit_b", "weights": "sam_vit_b_01ec64.pth"}``) and the released checkpoint;
optionally ``onnx/sam_decoder.onnx`` (``drape models export``) to run the prompt path on
ONNX Runtime.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from services.common.analysis import garment as G
from services.common.errors import InvalidInputError
from services.neural.sam import Sam, SamDecoder, prompt_arrays

REQUIRED = ("config.json",)
ONNX_DECODER = "onnx/sam_decoder.onnx"
# Positive prompt points: this many, each at least this fraction of the garment's inner
# radius inside its classical outline (deep inside, where the rough cut-out is surely right).
_POINTS = 3
_DEPTH = 0.5


@dataclasses.dataclass(frozen=True)
class Prompt:
    """SAM's prompt for one flat-lay, in original pixels."""

    box: np.ndarray  # [[x0, y0], [x1, y1]]
    points: np.ndarray  # [N, 2]
    labels: np.ndarray  # [N], 1 = garment


def prompt_from_cutout(alpha: np.ndarray, n_points: int = _POINTS) -> Prompt:
    """Box and positive points from the classical cut-out.

    The points are the deepest pixels of the cut-out (distance-transform maxima), taken
    greedily at least half the inner radius apart, so they spread over the garment body.

    Raises:
        InvalidInputError: GARMENT_NOT_FOUND when the cut-out is empty.
    """
    binary = (alpha >= 0.5).astype(np.uint8)
    if not binary.any():
        raise InvalidInputError(
            "GARMENT_NOT_FOUND", "no garment found: nothing stands out from the background",
            field="garment",
        )  # fmt: skip
    ys, xs = np.nonzero(binary)
    box = np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], np.float32)
    dist = cv2.distanceTransform(binary, cv2.DIST_L2, 5)
    radius = float(dist.max())
    points: list[tuple[float, float]] = []
    work = dist.copy()
    for _ in range(n_points):
        y, x = np.unravel_index(int(np.argmax(work)), work.shape)
        if work[y, x] < _DEPTH * radius:
            break
        points.append((float(x), float(y)))
        cv2.circle(work, (int(x), int(y)), max(1, int(radius)), 0.0, -1)
    pts = np.array(points, np.float32).reshape(-1, 2)
    return Prompt(box=box, points=pts, labels=np.ones(len(pts), np.float32))


class SamGarmentSegmenter:
    """Holds a SAM (load once) and segments flat-lays.

    Args:
        sam: the network (torch); its image encoder always runs in torch.
        decoder_session: an ONNX Runtime session of :class:`SamDecoder`, or None to run the
            prompt path in torch.
    """

    def __init__(self, sam: Sam, decoder_session=None) -> None:
        self.sam = sam.eval()
        self.decoder = SamDecoder(self.sam)
        self.session = decoder_session

    @torch.no_grad()
    def predict(self, rgb: np.ndarray, prompt: Prompt) -> tuple[np.ndarray, float]:
        """Mask logits at the image's size for one prompt, and SAM's predicted IoU.

        With a box the single-mask output is used (SAM's choice for unambiguous prompts).
        """
        x, scale = self.sam.preprocess(np.ascontiguousarray(rgb[..., :3]))
        emb = self.sam.image_encoder(x)
        coords, labels = prompt_arrays(prompt.points, prompt.labels, prompt.box, scale)
        if self.session is not None:
            masks, iou = self.session.run(
                ["low_res_masks", "iou_predictions"],
                {"image_embeddings": emb.numpy(), "point_coords": coords.numpy(),
                 "point_labels": labels.numpy()},
            )  # fmt: skip
        else:
            masks, iou = (t.numpy() for t in self.decoder(emb, coords, labels))
        low = masks[0, 0]
        s = self.sam.config.img_size
        h, w = rgb.shape[:2]
        up = cv2.resize(low, (s, s), interpolation=cv2.INTER_LINEAR)
        up = up[: int(h * scale + 0.5), : int(w * scale + 0.5)]
        return cv2.resize(up, (w, h), interpolation=cv2.INTER_LINEAR), float(iou[0, 0])

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The garment's alpha (``segment_garment``'s contract), refined by SAM.

        Raises:
            InvalidInputError: GARMENT_NOT_FOUND when even the classical cut-out is empty.
            ValueError: when ``image`` is not an ``H x W x 3|4`` uint8 array.
        """
        rough = G.segment_garment(image)
        logits, _ = self.predict(image, prompt_from_cutout(rough))
        # The logits' sigmoid is a soft edge about one low-res pixel wide; SAM's threshold
        # is logit 0.
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))).astype(np.float32)


def load(model, runtime: str = "torch", providers: tuple[str, ...] = ("cpu",)):
    """A :class:`SamGarmentSegmenter` from a verified model directory."""
    from services.neural.runtime import create_session
    from services.neural.sam import load_sam

    sam = load_sam(model.path)
    session = None
    if runtime == "onnxruntime":
        session = create_session(model.file(ONNX_DECODER), providers)
    return SamGarmentSegmenter(sam, session)
