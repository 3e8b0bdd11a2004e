"""The ```bash blocks of README.md, docs/usage.md and docs/rigs.md run as written, in order, on a small data set.

They run in a fresh folder laid out like a checkout (its ``recipes``, ``calibration`` and
``lutfuse_deploy`` linked), whose ``../shared/data`` holds two synthetic MSRS-size pairs and whose
``../shared/reference`` is the official checkpoints, so the docs' paths resolve as they do beside a
checkout; ``make`` commands run in the checkout itself. A block is skipped only for a reason printed
with the test: it needs a GPU, it is this test suite itself, or it trains for hours.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REF, synthetic_pair
from PIL import Image

from lutfuse_deploy.paths import REPO_ROOT

DOCS = (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "usage.md", REPO_ROOT / "docs" / "rigs.md")
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks() -> list[tuple[str, str]]:
    """(where, script) for every ```bash block, README first, in document order."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[: m.start()].count("\n") + 1
            out.append((f"{doc.relative_to(REPO_ROOT)}:{line}", m.group(1)))
    return out


MAKE_TEST = re.compile(r"^make test\b.*$", re.M)


def skip_reason(script: str) -> str | None:
    if re.search(r"^lutfuse-deploy train ", script, re.M):
        return "full training runs (tens of minutes to hours on a CPU); tests/test_train_run.py trains the same recipes' code on tiny data"
    if "--device cuda" in script or "--backend tensorrt" in script:
        return "needs a CUDA GPU and TensorRT"
    if "import av" in script and importlib.util.find_spec("av") is None:
        return "needs the video extra (pip install 'lutfuse-deploy[video]')"
    if script.lstrip().startswith("make ") and subprocess.run(
        ["make", "-q", ".venv/.installed"], cwd=REPO_ROOT, capture_output=True
    ).returncode != 0:
        return "`make` would reinstall .venv first (pyproject.toml is newer than its install stamp)"
    return None


def _small_data(root: Path) -> None:
    for name in ("ir", "vi"):
        (root / "data" / "ivif" / "msrs_test" / name).mkdir(parents=True)
    for i in range(2):
        ir, vi = synthetic_pair(h=480, w=640, seed=i)  # MSRS size: the video block encodes 640x480
        Image.fromarray(ir).save(root / "data" / "ivif" / "msrs_test" / "ir" / f"{i:05d}N.png")
        Image.fromarray(vi).save(root / "data" / "ivif" / "msrs_test" / "vi" / f"{i:05d}N.png")
    # an unregistered rig pair named and sized like rig/roadscene_raw's FLIR_00550 (docs/rigs.md uses it):
    # a visible frame with edges, and a thermal frame that sees the same edges through the homography
    # the recipe's clicked points fit, so calibration and refinement behave as on the real pair
    raw = root / "data" / "rig" / "roadscene_raw"
    for name in ("ir", "vi"):
        (raw / name).mkdir(parents=True)
    ir, vi = rig_pair()
    Image.fromarray(ir).save(raw / "ir" / "FLIR_00550.png")
    Image.fromarray(vi).save(raw / "vi" / "FLIR_00550.jpg", quality=95)


def rig_pair() -> tuple[np.ndarray, np.ndarray]:
    """(IR 640x512, visible 537x302 RGB): blocks and bars in the visible frame; the IR is its inverted
    luminance seen through the homography of recipes/rigs/roadscene-FLIR_00550.points.csv."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    from lutfuse_deploy.rig.file import apply_homography
    from lutfuse_deploy.rig.points import fit_points, read_points

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:302, 0:537]
    gray = np.full((302, 537), 90.0)
    for _ in range(40):
        x0, y0 = rng.integers(0, 500), rng.integers(0, 280)
        gray[y0:y0 + rng.integers(10, 60), x0:x0 + rng.integers(10, 80)] = rng.uniform(0, 255)
    gray = gaussian_filter(gray, 1.0)
    vi = np.clip(np.stack([gray, gray * 0.9 + 10, gray * 0.8 + 20], -1), 0, 255).astype(np.uint8)
    h = fit_points(read_points(REPO_ROOT / "recipes" / "rigs" / "roadscene-FLIR_00550.points.csv"),
                   (640, 512), (537, 302)).rig.homography
    iy, ix = np.mgrid[0:512, 0:640]
    where = apply_homography(h, np.stack([ix.ravel(), iy.ravel()], 1).astype(float))
    ir = map_coordinates(255.0 - gray, [where[:, 1], where[:, 0]], order=1, cval=40.0).reshape(512, 640)
    return np.clip(ir, 0, 255).astype(np.uint8), vi


@pytest.mark.skipif(not (REF / "lutfuse_official").is_dir(), reason=f"official checkpoints not found at {REF}")
def test_documented_commands_run_as_written(tmp_path: Path) -> None:
    _small_data(tmp_path / "shared")
    (tmp_path / "shared" / "reference").symlink_to(REF)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "calibration", "lutfuse_deploy"):  # what the docs name relative to the checkout
        (work / name).symlink_to(REPO_ROOT / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "LUTFUSE_DATA": str(tmp_path / "shared" / "data"), "LUTFUSE_REFERENCE": str(REF)}
    skipped = []
    for where, script in bash_blocks():
        reason = skip_reason(script)
        if reason:
            skipped.append(f"{where}: {reason}")
            continue
        if MAKE_TEST.search(script):
            skipped.append(f"{where}: `make test` runs this test suite (it would run itself)")
            script = MAKE_TEST.sub("", script)
        cwd = REPO_ROOT if script.lstrip().startswith("make ") else work
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{where} failed:\n{script}\n--- stderr ---\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr[-3000:]}"
    print("skipped blocks:\n  " + "\n  ".join(skipped))
    assert len(skipped) < len(bash_blocks())
