"""Image filters shared by the services' numeric code."""

from __future__ import annotations

import cv2
import numpy as np


def wide_gaussian(img: np.ndarray, sigma: float, max_factor: int = 8) -> np.ndarray:
    """A Gaussian blur of ``sigma`` px that runs a wide one on a reduced copy.

    A Gaussian of sigma ``s`` at 1/k scale is one of sigma ``k*s`` at full scale; with
    ``k = sigma // 4`` (at most ``max_factor``) the result is smooth over k px, so coming
    back up bilinearly adds well under a percent of error, at a fraction of the cost of a
    wide kernel at full resolution.

    Args:
        img: ``H x W`` or ``H x W x C`` float32 image.
        sigma: the blur's standard deviation in pixels of ``img``.
        max_factor: the largest reduction used.

    Returns:
        the blurred image, the shape of ``img``.
    """
    k = int(np.clip(sigma // 4, 1, max_factor))
    h, w = img.shape[:2]
    if k == 1 or min(h, w) < 4 * k:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    small = cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / k)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
