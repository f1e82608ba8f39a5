"""Re-resolve ``requirements.lock`` from ``pyproject.toml`` (``make lock``).

Resolution happens in a throw-away virtual environment, in the order that keeps the set
sane (see the lock's header): the CPU torch wheel first, then every other dependency and
test dependency through pip's resolver, then mediapipe without its declared dependencies
(numpy<2, opencv-contrib-python). The environment is frozen into the lock, keeping the
lock's comment header. Review the diff and run ``make test`` before committing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_DEPS = ("mediapipe",)  # installed with --no-deps; its real needs are listed in pyproject


def _name(req: str) -> str:
    for sep in "=<>!~[; ":
        req = req.split(sep)[0]
    return req.strip().lower()


def main() -> int:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["test"])
    torch = [r for r in reqs if _name(r) == "torch"]
    no_deps = [r for r in reqs if _name(r) in NO_DEPS]
    rest = [r for r in reqs if r not in torch and r not in no_deps]
    with tempfile.TemporaryDirectory(prefix="drape-lock-") as tmp:
        py = Path(tmp) / "bin" / "python"
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *torch], check=True)
        subprocess.run([*pip, *rest, *torch], check=True)  # torch again: keep the CPU build
        subprocess.run([*pip, "--no-deps", *no_deps], check=True)
        frozen = subprocess.run(
            [str(py), "-m", "pip", "freeze", "--all"], check=True, capture_output=True, text=True
        ).stdout.splitlines()
    lock = ROOT / "requirements.lock"
    header = [ln for ln in lock.read_text().splitlines() if ln.startswith("#")]
    body = sorted(ln for ln in frozen if ln and not ln.startswith(("pip==", "-e ", "drape")))
    lock.write_text("\n".join(header + body) + "\n")
    print(
        f"wrote {lock} ({len(body)} packages); review `git diff requirements.lock`, then `make test`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
