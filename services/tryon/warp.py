"""Warping garment parts onto the body with thin-plate splines.

A thin-plate spline (Bookstein 1989, "Principal warps: thin-plate splines and the
decomposition of deformations") maps a handful of landmark correspondences to a smooth,
minimally bent deformation of the plane. Each garment part (torso panel, each sleeve, each
trouser leg) gets its own spline so a sleeve can follow the arm while the torso follows the
chest. Warps are computed backwards (for each output pixel, where in the flat-lay it comes
from) on a coarse grid, then upsampled, which is both faster and free of holes.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np


def _kernel(r2: np.ndarray) -> np.ndarray:
    """TPS radial basis U(r) = r^2 log r^2 (with U(0) = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r2 * np.log(r2)
    out[~np.isfinite(out)] = 0.0
    return out


class ThinPlateSpline:
    """A 2-D thin-plate spline mapping ``src`` points onto ``dst`` points.

    Args:
        src: ``n x 2`` control points.
        dst: ``n x 2`` where they go.
        smoothing: regularisation lambda (0 interpolates exactly); a little smoothing keeps
            nearly coincident control points from producing wild folds.

    Raises:
        ValueError: fewer than 3 points, mismatched shapes, or a degenerate (collinear) set.
    """

    def __init__(self, src: np.ndarray, dst: np.ndarray, smoothing: float = 0.0) -> None:
        src = np.asarray(src, np.float64)
        dst = np.asarray(dst, np.float64)
        if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 3:
            raise ValueError(f"need n >= 3 matching 2-D points, got {src.shape} and {dst.shape}")
        n = len(src)
        # Normalise for conditioning: the kernel grows like r^2 log r^2.
        self._c = src.mean(axis=0)
        self._s = max(float(np.abs(src - self._c).max()), 1e-6)
        p = (src - self._c) / self._s
        k = _kernel(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)) + smoothing * np.eye(n)
        a = np.ones((n, 3))
        a[:, 1:] = p
        system = np.zeros((n + 3, n + 3))
        system[:n, :n] = k
        system[:n, n:] = a
        system[n:, :n] = a.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = dst
        try:
            self._coef = np.linalg.solve(system, rhs)
        except np.linalg.LinAlgError:
            raise ValueError("degenerate control points (collinear or repeated)") from None
        self._p = p

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """Map ``m x 2`` points."""
        q = (np.asarray(pts, np.float64) - self._c) / self._s
        u = _kernel(((q[:, None, :] - self._p[None, :, :]) ** 2).sum(-1))
        n = len(self._p)
        return u @ self._coef[:n] + self._coef[n] + q @ self._coef[n + 1 :]


@dataclasses.dataclass
class WarpedPart:
    """A garment part rendered into the photo's frame.

    Attributes:
        rgb: ``H x W x 3`` float32 colours (0..255), valid where ``alpha > 0``.
        alpha: ``H x W`` float32 coverage 0..1.
        map_x: ``H x W`` float32 source x per output pixel (inside the part's box), for debug
            grids and for carrying garment-space masks along.
        map_y: same for y.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray


def warp_part(
    rgba: np.ndarray,
    part_mask: np.ndarray,
    src_pts: np.ndarray,
    dst_pts: np.ndarray,
    out_size: tuple[int, int],
    grid_step: int = 4,
    smoothing: float = 1e-3,
) -> WarpedPart:
    """Warp one garment part from flat-lay space into the photo.

    Args:
        rgba: the garment cut-out, ``h x w x 4`` uint8.
        part_mask: ``h x w`` float32 0..1, which pixels belong to this part.
        src_pts: control points in the cut-out.
        dst_pts: where they go in the photo.
        out_size: ``(H, W)`` of the photo.
        grid_step: the backward map is evaluated every ``grid_step`` pixels and upsampled.
        smoothing: TPS regularisation.

    Returns:
        The part in the photo's frame.
    """
    h_out, w_out = out_size
    inverse = ThinPlateSpline(dst_pts, src_pts, smoothing)
    # Only evaluate where the part can land: the box of the forward-mapped part outline.
    forward = ThinPlateSpline(src_pts, dst_pts, smoothing)
    empty = np.zeros((h_out, w_out), np.float32)
    src_box = _support_box(part_mask)
    if src_box is None:
        return WarpedPart(
            np.zeros((h_out, w_out, 3), np.float32), empty, empty.copy(), empty.copy()
        )
    contour_pts = _outline_samples(part_mask)
    fwd = forward(contour_pts)
    pad = 4 * grid_step
    x0 = int(np.clip(np.floor(fwd[:, 0].min()) - pad, 0, w_out))
    x1 = int(np.clip(np.ceil(fwd[:, 0].max()) + pad, 0, w_out))
    y0 = int(np.clip(np.floor(fwd[:, 1].min()) - pad, 0, h_out))
    y1 = int(np.clip(np.ceil(fwd[:, 1].max()) + pad, 0, h_out))
    map_x = np.full((h_out, w_out), -1.0, np.float32)
    map_y = np.full((h_out, w_out), -1.0, np.float32)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return WarpedPart(np.zeros((h_out, w_out, 3), np.float32), empty, map_x, map_y)
    gx = np.arange(x0, x1 + grid_step, grid_step, dtype=np.float64)
    gy = np.arange(y0, y1 + grid_step, grid_step, dtype=np.float64)
    mx, my = np.meshgrid(gx, gy)
    src = inverse(np.stack([mx.ravel(), my.ravel()], axis=1))
    coarse_x = src[:, 0].reshape(mx.shape).astype(np.float32)
    coarse_y = src[:, 1].reshape(mx.shape).astype(np.float32)
    bw, bh = x1 - x0, y1 - y0
    # Upsample the coarse map: grid node j sits at pixel j * grid_step of the box.
    # (warpAffine takes the forward coarse -> fine transform and inverts it itself.)
    scale = np.array([[grid_step, 0, 0], [0, grid_step, 0]], np.float32)
    flags = cv2.INTER_LINEAR
    fine_x = cv2.warpAffine(coarse_x, scale, (bw, bh), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    fine_y = cv2.warpAffine(coarse_y, scale, (bw, bh), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    map_x[y0:y1, x0:x1] = fine_x
    map_y[y0:y1, x0:x1] = fine_y
    # Sample only the part's own box of the cut-out (one pixel of zero coverage around it,
    # so bilinear taps across its rim read the same zeros as the full cut-out would):
    # premultiplied colour and coverage in one 4-channel float32 image, no full-size copy.
    sy0, sy1, sx0, sx1 = src_box
    m = np.asarray(part_mask[sy0:sy1, sx0:sx1], np.float32)
    src_img = np.empty((sy1 - sy0, sx1 - sx0, 4), np.float32)
    np.multiply(rgba[sy0:sy1, sx0:sx1, :3], m[..., None], out=src_img[..., :3], casting="unsafe")
    src_img[..., 3] = m
    out = cv2.remap(
        src_img,
        fine_x - np.float32(sx0),
        fine_y - np.float32(sy0),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    alpha = np.zeros((h_out, w_out), np.float32)
    rgb = np.zeros((h_out, w_out, 3), np.float32)
    a = np.clip(out[..., 3], 0, 1)
    alpha[y0:y1, x0:x1] = a
    # Straight colour where there is coverage, 0 elsewhere (``rgb`` starts at 0).
    np.divide(
        out[..., :3],
        np.maximum(a, 1e-4)[..., None],
        out=rgb[y0:y1, x0:x1],
        where=a[..., None] > 1e-4,
    )
    return WarpedPart(rgb, alpha, map_x, map_y)


def _support_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` of the pixels of ``mask`` above 0.02 (None when there are
    none), grown to take in every non-zero pixel plus a one-pixel rim of zeros."""
    if not (mask > 0.02).any():
        return None
    nz = mask > 0
    rows = np.flatnonzero(nz.any(axis=1))
    cols = np.flatnonzero(nz.any(axis=0))
    h, w = mask.shape
    return (
        max(0, int(rows[0]) - 1),
        min(h, int(rows[-1]) + 2),
        max(0, int(cols[0]) - 1),
        min(w, int(cols[-1]) + 2),
    )


def _outline_samples(mask: np.ndarray, n: int = 200) -> np.ndarray:
    """Points along the outer contour of ``mask`` (for bounding the forward image)."""
    contours, _ = cv2.findContours(
        (mask > 0.02).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    pts = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    if len(pts) > n:
        pts = pts[np.linspace(0, len(pts) - 1, n).astype(int)]
    return pts
