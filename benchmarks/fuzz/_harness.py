"""What every fuzz target shares: the verdict on an exception, the seed corpus on disk, and
libFuzzer's default bounds.

A target module defines ``seeds() -> list[bytes]`` (made in code), ``one_input(data)``
(raises only on a finding) and calls :func:`main` under ``if __name__ == "__main__"``.

A finding is:

- any exception other than a :class:`~services.common.errors.DrapeError` (a refusal with a
  reason) -- including :class:`~services.common.errors.InternalError`, which is our own
  fault by definition;
- an INVALID_ARGUMENT refusal that names no request field (the contract promises a
  ``BadRequest`` field violation with every one);
- an input that runs longer than ``-timeout`` seconds (libFuzzer: "timeout");
- a process that grows past ``-rss_limit_mb`` (libFuzzer: "out-of-memory").
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from services.common.errors import DrapeError, InternalError, InvalidInputError

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "fuzz"

# Bounds every target runs under unless the command line names its own.
DEFAULT_TIMEOUT_S = 20
DEFAULT_RSS_MB = 3072


class Finding(AssertionError):
    """A result the contract does not allow (a refusal without a field, a bad output)."""


def refused(fn: Callable[..., object], *args, **kwargs) -> DrapeError | None:
    """Run ``fn``; return the refusal it raised (None when it returned).

    Raises:
        InternalError: re-raised: our own fault is a finding.
        Finding: an InvalidInputError that names no request field.
        Exception: anything else ``fn`` raised (a finding: a crash).
    """
    try:
        fn(*args, **kwargs)
    except InternalError:
        raise
    except InvalidInputError as err:
        if not err.field:
            raise Finding(f"{err.reason} names no field: {err}") from err
        return err
    except DrapeError as err:
        return err
    return None


def main(name: str, one_input: Callable[[bytes], None], seeds: Callable[[], list[bytes]]) -> None:
    """Run ``one_input`` under atheris with ``sys.argv``'s libFuzzer options.

    ``--check-seeds`` runs the seeds through ``one_input`` once, without libFuzzer, prints
    how many there were and exits (the test suite does this for every target).

    Without a corpus directory on the command line, ``out/fuzz/<name>/corpus`` is used and
    the seeds are written into it first; crash, timeout and out-of-memory inputs land in
    ``out/fuzz/<name>/``. ``-timeout`` and ``-rss_limit_mb`` default to
    :data:`DEFAULT_TIMEOUT_S` and :data:`DEFAULT_RSS_MB`.
    """
    import atheris

    # Pillow and PyAV warn about every odd tag of every mutated file; a warning is not a
    # finding, and millions of them would bury the status lines in the log.
    warnings.simplefilter("ignore")
    argv = list(sys.argv)
    if "--check-seeds" in argv:
        made = seeds()
        for seed in made:
            one_input(seed)  # raises on a finding
        print(f"{name}: {len(made)} seeds, no finding")
        return
    opts = [a for a in argv[1:] if a.startswith("-")]
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    work = OUT / name
    if not dirs:
        corpus = work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
        dirs = [str(corpus)]
    work.mkdir(parents=True, exist_ok=True)
    given = {a.split("=", 1)[0] for a in opts}
    defaults = {
        "-timeout": str(DEFAULT_TIMEOUT_S),
        "-rss_limit_mb": str(DEFAULT_RSS_MB),
        "-artifact_prefix": f"{work}/",
        "-print_final_stats": "1",
    }
    opts += [f"{k}={v}" for k, v in defaults.items() if k not in given]
    atheris.Setup([argv[0], *opts, *dirs], one_input)
    atheris.Fuzz()
