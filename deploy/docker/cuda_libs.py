"""Print the directories of a virtualenv's CUDA and TensorRT shared libraries, one a line.

Dockerfile.gpu writes them to /etc/ld.so.conf.d/ so that ONNX Runtime's CUDA and TensorRT
providers find the libraries the nvidia-* and tensorrt wheels installed (torch finds its own).

    python cuda_libs.py VENV > ld.so.conf
"""

from __future__ import annotations

import sys
from pathlib import Path


def library_dirs(venv: Path) -> list[str]:
    """Sorted directories under ``venv``'s nvidia/ and tensorrt*/ packages holding lib*.so*."""
    dirs = set()
    for site in venv.glob("lib/python3*/site-packages"):
        for root in [site / "nvidia", *site.glob("tensorrt*")]:
            for lib in root.rglob("lib*.so*"):
                dirs.add(str(lib.parent))
    return sorted(dirs)


if __name__ == "__main__":
    found = library_dirs(Path(sys.argv[1]))
    if not found:
        sys.exit(f"no CUDA libraries under {sys.argv[1]}")
    print("\n".join(found))
