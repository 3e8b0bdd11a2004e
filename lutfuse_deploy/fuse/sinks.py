"""Where fused images go: PNG (and raw .npy) files in a folder, a video file, a folder of frames."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lutfuse_deploy.errors import InputError, OutputError
from lutfuse_deploy.io.images import IMAGE_EXTS, ImagePair


def plan_outputs(pairs: list[ImagePair], out: str | Path, save_float: bool = False) -> list[tuple[Path, Path | None]]:
    """Where each pair's PNG (and raw ``.npy``) goes: ``OUT/NAME.png``, or OUT itself for one pair.

    ``--out fused.png`` with one pair names the file; with several pairs it is refused, since a
    folder called ``fused.png`` is never what was meant.
    """
    out = Path(out)
    if out.suffix.lower() in IMAGE_EXTS and not out.is_dir():
        if out.suffix.lower() != ".png":
            raise OutputError(f"{out}: fuse writes PNG; name the output NAME.png or give a folder")
        if len(pairs) != 1:
            raise OutputError(f"{out}: a file name takes one pair, these are {len(pairs)}; give a folder")
        return [(out, out.with_suffix(".npy") if save_float else None)]
    return [(out / f"{p.name}.png", out / f"{p.name}.npy" if save_float else None) for p in pairs]


@contextlib.contextmanager
def frames_folder(target: Path | None) -> Iterator[Path | None]:
    """``--save-frames DIR``: PNGs go to a hidden folder inside DIR and move in only on success."""
    if target is None:
        yield None
        return
    if target.exists() and not target.is_dir():
        raise InputError(f"--save-frames {target}: exists and is not a folder")
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".frames.", dir=target))
    try:
        yield tmp
        for png in sorted(tmp.iterdir()):
            os.replace(png, target / png.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

