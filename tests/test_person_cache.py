"""The try-on server's cache of person analyses (:mod:`services.tryon.person_cache`), on the
real pose model and real photos."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from services.common.analysis.person import PersonAnalyzer, PersonSelection
from services.common.errors import InvalidInputError
from services.tryon.person_cache import CachedPersonAnalyzer


@pytest.fixture(scope="module")
def analyzer():
    a = PersonAnalyzer()
    yield a
    a.close()


def test_the_same_pixels_are_analysed_once_and_others_again(analyzer):
    cache = CachedPersonAnalyzer(analyzer, size=2)
    photo = data.astronaut()
    first = cache.analyze(photo)
    again = cache.analyze(photo.copy())  # same pixels, another array
    assert again is first and (cache.hits, cache.misses) == (1, 1)
    # One pixel changed is another photo; another selection policy another answer.
    other = photo.copy()
    other[0, 0] ^= 1
    assert cache.analyze(other) is not first
    cache.analyze(photo, PersonSelection.REFUSE)
    assert cache.misses == 3 and len(cache) == 2  # bounded: the oldest went


def test_refusals_are_not_cached_and_size_zero_keeps_nothing(analyzer):
    cache = CachedPersonAnalyzer(analyzer, size=4)
    blank = np.full((300, 300, 3), 255, np.uint8)
    for _ in range(2):
        with pytest.raises(InvalidInputError):
            cache.analyze(blank)
    assert len(cache) == 0 and cache.misses == 2
    off = CachedPersonAnalyzer(analyzer, size=0)
    off.analyze(data.astronaut())
    off.analyze(data.astronaut())
    assert len(off) == 0 and off.hits == 0
