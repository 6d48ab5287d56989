"""Small I/O helpers every script uses: atomic writes, run metadata, seeding, figure saving.

All results are written atomically (temp file in the same directory, then ``os.replace``) so a
crash never leaves a half-written JSON over a good one.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
DATA = ROOT / "data"
SHARED = ROOT.parent / "shared"  # the steering repo's shared/ (seeds, pilot); may be absent

_PACKAGES = ("torch", "transformers", "peft", "numpy", "scipy", "pandas", "pycocotools", "safetensors")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file + rename; creates parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and checkpoints are shared and committed
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item") and callable(o.item):  # torch scalars
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN is refused: results must be finite or null)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in the error if it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON in {path}: {e}") from e


@contextlib.contextmanager
def exclusive(path: str | Path):
    """Hold an exclusive lock file while a cached artifact is produced (another process waits, then reuses it)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_json(path: str | Path, compute, force: bool = False):
    """``path``'s JSON if it exists (and not ``force``), else ``compute()`` written there atomically; under a
    lock, so parallel processes compute it once."""
    path = Path(path)
    with exclusive(path.with_suffix(".lock")):
        if path.exists() and not force:
            return read_json(path)
        value = compute()
        atomic_write_json(path, value)
    return value


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour the numbers depend on."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


#: Folders whose untracked ``*.py`` files count as code (a new script not yet committed makes the tree dirty).
CODE_DIRS = ("common", "post01", "post02", "rank_series", "scripts")


def code_version() -> dict[str, Any]:
    """The git commit of the code that produced a result, and whether its code had uncommitted edits: tracked
    ``*.py``, Makefile and requirements.txt with changes, or untracked ``*.py`` under :data:`CODE_DIRS` (a new
    script not yet committed). Results files being rewritten do not count. ``dirty_files`` names them (first 20 of
    ``n_dirty_files``).

    ``{"commit": None}`` outside a git checkout (e.g. an unpacked archive).
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "*.py", "Makefile", "requirements.txt").splitlines()
        new = git("status", "--porcelain", "--untracked-files=all", "--", *(f"{d}/*.py" for d in CODE_DIRS)).splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    files = sorted({line[3:].strip() for line in changed} | {line[3:].strip() for line in new if line.startswith("??")})
    return {"commit": commit, "dirty": bool(files), "dirty_files": files[:20], "n_dirty_files": len(files)}


def run_meta(config: dict[str, Any], seed: int, t0: float) -> dict[str, Any]:
    """The reproducibility record every results JSON carries: command, config, seed, code commit, versions, wall time."""
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": config,
        "seed": seed,
        "code": code_version(),
        "versions": package_versions(),
        "wall_time_s": round(time.time() - t0, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def save_figure(fig: Any, path_stem: str | Path) -> list[Path]:
    """Save a matplotlib figure as ``<stem>.png`` and ``<stem>.svg`` atomically; closes the figure.

    Dots in the stem are kept ("fig-9.15" → "fig-9.15.png"). Both files are deterministic (no date, fixed SVG
    id salt), so redrawing an unchanged result leaves them byte-identical.
    """
    import io as _io

    import matplotlib.pyplot as plt

    import matplotlib

    stem = Path(path_stem)
    out = []
    matplotlib.rcParams["svg.hashsalt"] = "sam3-repro"  # stable element ids: an unchanged figure redraws byte-identical
    for ext in ("png", "svg"):
        buf = _io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else {})
        out.append(atomic_write_bytes(stem.parent / f"{stem.name}.{ext}", buf.getvalue()))
    plt.close(fig)
    return out
