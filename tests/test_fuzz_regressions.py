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
