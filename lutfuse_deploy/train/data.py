"""Training data: paired ir/vi folders -> seeded random crops, as a stateless stream.

Sample number ``i`` maps to one crop by a pure function of ``(seed, i, rank)``: any DataLoader
worker, any DDP rank and a resumed run all see exactly the same crops, with no sampler state to
save. IR is read as one channel, the visible as RGB; its gray is PIL's ``convert('L')`` of the same
RGB crop, as the MMDRFuse models and the metrics expect (docs/semantics.md §1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.io.images import ImagePair, find_pairs, load_pair
from lutfuse_deploy.metrics.fusion import VIF_MIN_SIDE, to_gray

# Stream ids keep the random sequences of different uses independent.
_EPOCH, _CROP, _PATCH, _FLIP = 1, 2, 3, 4


def set_folders(root: str | Path, sets: list[str]) -> list[Path]:
    """``root/<set>`` for each set; each must hold ir/ and vi/."""
    base = Path(root)
    folders = []
    for name in sets:
        folder = base / name
        for sub in ("ir", "vi"):
            if not (folder / sub).is_dir():
                raise InputError(
                    f"{folder / sub}: training set folder not found (expected {name}/ir and {name}/vi)"
                )
        folders.append(folder)
    return folders


def collect_pairs(folders: list[Path]) -> list[ImagePair]:
    """Every matched pair of every folder; any unmatched file is an error (training must not guess)."""
    pairs: list[ImagePair] = []
    for folder in folders:
        found, problems = find_pairs(folder / "ir", folder / "vi")
        if problems:
            raise InputError(
                f"{folder}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        pairs += [ImagePair(f"{folder.name}/{p.name}", p.ir, p.vi) for p in found]
    if not pairs:
        raise InputError("no training pairs found")
    return pairs


class PairStore:
    """Decoded pairs (IR uint8 H x W, visible uint8 H x W x 3), in memory when ``cache``."""

    def __init__(self, pairs: list[ImagePair], cache: bool = True, ir16: str = "refuse") -> None:
        self.pairs, self.ir16 = pairs, ir16
        self._cache = [load_pair(p, vi_mode="RGB", ir16=ir16) for p in pairs] if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None:
            return self._cache[index]
        return load_pair(self.pairs[index], vi_mode="RGB", ir16=self.ir16)


def _crop(
    ir: np.ndarray, rgb: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    h, w = ir.shape
    if h < size or w < size:  # small images are reflect-padded up to the crop
        ph, pw = max(size - h, 0), max(size - w, 0)
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        ir = np.pad(ir, pads, mode="reflect")
        rgb = np.pad(rgb, pads + ((0, 0),), mode="reflect")
        h, w = ir.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return ir[y : y + size, x : x + size], rgb[y : y + size, x : x + size]


@dataclass(frozen=True)
class StreamSpec:
    crop: int
    flip: bool
    seed: int
    rank: int = 0
    world: int = 1
    patches: int = 0  # > 0: a fixed pool of patches (mini's refresh banks index it); 0: fresh crops


class CropStream(Dataset):
    """Map-style dataset over sample numbers: ``stream[i]`` is a dict of uint8 tensors.

    Keys: ``ir`` (1 x S x S), ``rgb`` (3 x S x S), ``gray`` (1 x S x S), ``patch`` (pool index, -1
    without a pool) and ``flips`` (2 flags: vertical, horizontal; already applied to the images).
    """

    def __init__(self, store: PairStore, spec: StreamSpec) -> None:
        self.store = store
        self.spec = spec
        # A patch pool is split between ranks (patch p belongs to rank p % world): each rank's
        # history-bank rows are then its own, and no two processes write the same row.
        self.own_patches = np.arange(spec.rank, spec.patches, spec.world) if spec.patches else None
        if self.own_patches is not None and len(self.own_patches) == 0:
            raise InputError(
                f"data.patches ({spec.patches}) is smaller than the number of processes ({spec.world})"
            )

    def __len__(self) -> int:
        return 1 << 62  # the sampler decides which sample numbers are drawn

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a handful of epochs, the dataset lives as long as the run
    def _order(self, epoch: int, n: int) -> np.ndarray:
        return np.random.default_rng([self.spec.seed, _EPOCH, self.spec.rank, epoch]).permutation(n)

    def locate(self, i: int) -> tuple[int, int, np.random.Generator]:
        """Sample number -> (pair index, patch index or -1, generator for the crop position)."""
        s = self.spec
        if self.own_patches is not None:
            n = len(self.own_patches)
            patch = int(self.own_patches[self._order(i // n, n)[i % n]])
            return patch % len(self.store), patch, np.random.default_rng([s.seed, _PATCH, patch])
        n = len(self.store)
        pair = int(self._order(i // n, n)[i % n])
        return pair, -1, np.random.default_rng([s.seed, _CROP, s.rank, i])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.spec
        pair, patch, rng = self.locate(int(i))
        ir, rgb = self.store.get(pair)
        ir, rgb = _crop(ir, rgb, s.crop, rng)
        flips = np.zeros(2, dtype=bool)
        if s.flip:
            flips = np.random.default_rng([s.seed, _FLIP, s.rank, int(i)]).random(2) < 0.5
            if flips[0]:
                ir, rgb = ir[::-1], rgb[::-1]
            if flips[1]:
                ir, rgb = ir[:, ::-1], rgb[:, ::-1]
        rgb = np.array(rgb, copy=True)  # own, writable memory: the cache stays read-only and shared
        return {
            "ir": torch.from_numpy(np.array(ir, copy=True))[None],
            "rgb": torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
            "gray": torch.from_numpy(to_gray(rgb))[None],
            "patch": torch.tensor(patch, dtype=torch.long),
            "flips": torch.from_numpy(flips.copy()),
        }


def make_loader(
    stream: CropStream, batch_size: int, start_step: int, steps: int, workers: int, seed: int
) -> torch.utils.data.DataLoader:
    """Batches for steps ``start_step .. steps-1`` (sample numbers step*batch .. +batch-1)."""
    indices = range(start_step * batch_size, steps * batch_size)
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        stream,
        batch_size=batch_size,
        sampler=indices,
        num_workers=workers,
        drop_last=True,
        persistent_workers=False,
        generator=gen,
    )


def pair_set(name: str) -> str:
    """The ``<set>`` of a ``<set>/<file>`` pair name; "" for a plain name from a validation folder."""
    return name.split("/", 1)[0] if "/" in name else ""


def split_holdout(pairs: list[ImagePair], per_set: int) -> tuple[list[ImagePair], list[ImagePair]]:
    """Keep ``per_set`` pairs of each set out of training, evenly spaced by name, for validation.

    Evenly spaced rather than the last few, so a set whose names follow its scenes (MSRS day then
    night) is sampled across all of them. Pair names are ``<set>/<file>``.
    """
    if per_set == 0:
        return pairs, []
    by_set: dict[str, list[ImagePair]] = {}
    for p in pairs:
        by_set.setdefault(pair_set(p.name), []).append(p)
    train: list[ImagePair] = []
    held: list[ImagePair] = []
    for name, members in by_set.items():
        n = len(members)
        if per_set >= n:
            raise InputError(
                f"data.holdout: {per_set} pairs per set would leave set {name!r} ({n} pairs) nothing to train on"
            )
        keep = {int((i + 0.5) * n / per_set) for i in range(per_set)}
        held += [p for i, p in enumerate(members) if i in keep]
        train += [p for i, p in enumerate(members) if i not in keep]
    return train, held


def _centre_crop(p: ImagePair, crop: int, name: str, ir16: str) -> tuple[str, np.ndarray, np.ndarray]:
    ir, rgb = load_pair(p, vi_mode="RGB", ir16=ir16)
    h, w = ir.shape
    ch, cw = (min(crop, h), min(crop, w)) if crop else (h, w)
    ch, cw = ch - ch % 2, cw - cw % 2
    if min(ch, cw) < VIF_MIN_SIDE:
        cause = f"crop {crop}" if crop and crop < min(h, w) else f"image {w}x{h}"
        raise InputError(
            f"{p.ir}: validation pair {name} ({cause}) is {cw}x{ch} after even cropping, smaller than "
            f"the {VIF_MIN_SIDE}x{VIF_MIN_SIDE} the validation metrics need (4-scale VIF)"
        )
    y, x = (h - ch) // 2, (w - cw) // 2
    return name, ir[y : y + ch, x : x + cw], rgb[y : y + ch, x : x + cw]


def validation_pairs(
    root: Path, pairs: int, crop: int, ir16: str = "refuse"
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The first ``pairs`` pairs of ``root`` (sorted by name), centre-cropped, even-sized."""
    found, _problems = find_pairs(root / "ir", root / "vi")
    if not found:
        raise InputError(f"{root}: no validation pairs")
    return [_centre_crop(p, crop, p.name, ir16) for p in found[:pairs]]


def holdout_pairs(
    held: list[ImagePair], pairs: int, crop: int, ir16: str = "refuse"
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``pairs`` held-out pairs of each set, centre-cropped; names keep their ``<set>/`` prefix,
    which ``validate`` uses to weigh every set equally."""
    taken: dict[str, int] = {}
    out = []
    for p in held:
        group = pair_set(p.name)
        if taken.get(group, 0) < pairs:
            taken[group] = taken.get(group, 0) + 1
            out.append(_centre_crop(p, crop, p.name, ir16))
    return out
