"""Image pairs: finding them, reading them the way the official code does, writing outputs atomically.

IR is converted to one channel and visible gray is replicated or computed with PIL's ITU-R 601-2
luma, exactly as the reference outputs were made (docs/semantics.md §1). Every failure names the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.io.files import atomic_path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IR16_MODES = ("refuse", "minmax", "percentile", "linear")
IR16_COMMANDS = "fuse, evaluate, compare, calibrate, profile, build-engine and train"  # the commands with --ir16 (a test keeps this true)
MIN_SIDE = 3
Image.MAX_IMAGE_PIXELS = 1 << 28  # 16k x 16k: larger is refused, not silently decoded


@dataclass(frozen=True)
class ImagePair:
    name: str
    ir: Path
    vi: Path


def _open(path: Path) -> Image.Image:
    """Open and fully decode, so truncated files fail here with the file named.

    A camera's EXIF Orientation tag is applied (``ImageOps.exif_transpose``), so a portrait JPEG
    is read upright, as image viewers show it, and matches its IR partner's size.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot decode image ({reason})") from None
    return img


def _is_16bit(img: Image.Image) -> bool:
    return img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I")


def normalise_16bit(raw: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16-bit radiometric frame to 8 bits.

    ``minmax``: per-frame min-max stretch; ``percentile``: the 1st-99th percentile stretch most
    thermal cameras' automatic gain uses (robust to hot spots); ``linear``: v * 255 / 65535 (keeps
    absolute scale across frames, dark for typical scenes).
    """
    x = raw.astype(np.float64)
    if mode == "linear":
        y = x * (255.0 / 65535.0)
    else:
        lo, hi = (x.min(), x.max()) if mode == "minmax" else np.percentile(x, [1.0, 99.0])
        y = (x - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def read_ir(path: str | Path, ir16: str = "refuse") -> np.ndarray:
    """IR as uint8 H x W. RGB-stored IR becomes gray with PIL's luma (R=G=B stays exact)."""
    path = Path(path)
    return _ir_array(_open(path), path, ir16)


def _ir_array(img: Image.Image, path: Path, ir16: str) -> np.ndarray:
    if _is_16bit(img):
        if ir16 == "refuse":
            raise InputError(f"{path}: 16-bit IR image; map it to 8 bits with --ir16 minmax|percentile|linear "
                             f"({IR16_COMMANDS} take it)")
        if ir16 not in IR16_MODES:
            raise InputError(f"unknown --ir16 mode {ir16!r}; choose one of {', '.join(IR16_MODES)}")
        return normalise_16bit(np.asarray(img), ir16)
    if img.mode in ("F", "I;32"):
        raise InputError(f"{path}: floating-point/32-bit images are not supported; save it as 8 or 16 bits")
    return np.asarray(img.convert("L"), dtype=np.uint8)


def read_vi(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """Visible as uint8 H x W x 3 (``RGB``; gray replicated) or H x W (``L``, PIL 601-2 luma)."""
    path = Path(path)
    return _vi_array(_open(path), path, mode)


def _vi_array(img: Image.Image, path: Path, mode: str) -> np.ndarray:
    if _is_16bit(img) or img.mode in ("F", "I;32"):
        raise InputError(f"{path}: visible image must be 8-bit, got PIL mode {img.mode}")
    rgb = img.convert("RGB")
    return np.asarray(rgb if mode == "RGB" else rgb.convert("L"), dtype=np.uint8)


#: Mean absolute difference between colour channels (0..255) above which an image holds colour:
#: a gray picture saved as RGB JPEG keeps channels within about one level of each other.
COLOUR_SPREAD = 2.0


def has_colour(img: Image.Image) -> bool:
    """Whether an image shows colour; RGB files whose channels (nearly) agree are gray."""
    if img.mode in ("1", "L", "LA", "La", "I", "F") or _is_16bit(img):
        return False
    rgb = np.asarray(img.convert("RGB"))[::4, ::4].astype(np.int16)  # every 16th pixel tells
    spread = max(float(np.abs(rgb[..., 0] - rgb[..., 1]).mean()), float(np.abs(rgb[..., 1] - rgb[..., 2]).mean()))
    return spread > COLOUR_SPREAD


@dataclass(frozen=True)
class PairImages:
    ir: np.ndarray
    vi: np.ndarray
    looks_swapped: bool  # a colour IR image with a gray visible one: --ir and --vi probably exchanged


def read_pair(pair: ImagePair, vi_mode: str = "RGB", ir16: str = "refuse", check_swap: bool = False) -> PairImages:
    """Read one pair, sizes unchecked: whether they fit together is the fusing runner's rule.
    ``check_swap`` also looks at the colours (``looks_swapped``)."""
    ir_img, vi_img = _open(pair.ir), _open(pair.vi)
    swapped = check_swap and not has_colour(vi_img) and has_colour(ir_img)
    return PairImages(_ir_array(ir_img, pair.ir, ir16), _vi_array(vi_img, pair.vi, vi_mode), swapped)


def load_pair(pair: ImagePair, vi_mode: str = "RGB", ir16: str = "refuse") -> tuple[np.ndarray, np.ndarray]:
    """Read one pair and check that it can be fused (same size, at least 3 x 3)."""
    images = read_pair(pair, vi_mode=vi_mode, ir16=ir16)
    ir, vi = images.ir, images.vi
    if ir.shape[:2] != vi.shape[:2]:
        raise InputError(
            f"{pair.name}: size mismatch, ir {pair.ir.name} is {ir.shape[1]}x{ir.shape[0]} but "
            f"vi {pair.vi.name} is {vi.shape[1]}x{vi.shape[0]}"
        )
    if min(ir.shape[:2]) < MIN_SIDE:
        raise InputError(f"{pair.name}: image is {ir.shape[1]}x{ir.shape[0]}, smaller than 3x3")
    return ir, vi


def _listing(folder: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        files.setdefault(p.stem, []).append(p)
    return files


def find_pairs(ir: str | Path, vi: str | Path) -> tuple[list[ImagePair], list[str]]:
    """Match IR and visible images by file stem (``00001.png`` <-> ``00001.jpg``).

    Returns the pairs and one line per problem (missing partner, non-image file, ambiguous name).
    A missing or empty folder is not per-pair: it raises ``InputError``.
    """
    ir, vi = Path(ir), Path(vi)
    for p, role in ((ir, "ir"), (vi, "vi")):
        if not p.exists():
            raise InputError(f"{p}: no such {role} file or folder")
    if ir.is_file() and vi.is_file():
        return [ImagePair(ir.stem, ir, vi)], []
    if ir.is_dir() != vi.is_dir():
        raise InputError(f"--ir {ir} and --vi {vi} must both be files or both be folders")
    ir_files, vi_files = _listing(ir), _listing(vi)
    if not ir_files and not vi_files:
        raise InputError(f"{ir} and {vi}: both folders are empty")
    for folder, files in ((ir, ir_files), (vi, vi_files)):
        if not files:
            raise InputError(f"{folder}: folder holds no images")
    pairs: list[ImagePair] = []
    problems: list[str] = []
    for stem in sorted(set(ir_files) | set(vi_files)):
        bad = False
        for role, files in (("ir", ir_files), ("vi", vi_files)):
            cands = files.get(stem, [])
            if len(cands) > 1:
                problems.append(f"{stem}: ambiguous, several {role} files: {', '.join(c.name for c in cands)}")
                bad = True
            for c in cands:
                if c.suffix.lower() not in IMAGE_EXTS:
                    problems.append(f"{c}: not an image file (extension {c.suffix or 'none'})")
                    bad = True
        if bad:
            continue
        if stem not in vi_files:
            problems.append(f"{ir_files[stem][0]}: no visible partner named {stem}.* in {vi}")
        elif stem not in ir_files:
            problems.append(f"{vi_files[stem][0]}: no IR partner named {stem}.* in {ir}")
        else:
            pairs.append(ImagePair(stem, ir_files[stem][0], vi_files[stem][0]))
    return pairs, problems


def save_png(path: str | Path, image: np.ndarray, compress_level: int = 6) -> None:
    """Write a uint8 H x W or H x W x 3 array as PNG, atomically. ``compress_level`` is zlib's
    (0-9; PIL's default 6); any level holds the same pixels."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=compress_level)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
