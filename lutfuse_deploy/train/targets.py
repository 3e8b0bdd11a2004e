"""Teacher targets for the mini's fixed patch pool, computed once and kept on disk.

The dense teacher's forward pass is ~90 % of a mini training step on a CPU (measured: 0.86 s of
teacher against 0.07 s of student step, batch 4 of 160², one thread), yet the student only ever
sees the ``data.patches`` crops of its pool, each in one of four flip states. So the teacher runs
once per (patch, flips) key and its two distillation targets are stored:

- its output (1 channel), and
- its 4-channel feature *summed over channels*: digestible distillation only uses the
  channel-summed, L2-normalised map (``losses.attention_map``), so the sum loses nothing.

Both are float16 ``.npy`` memmaps in ``RUN/teacher_targets/``: ``2 x keys x crop² x 2`` bytes with
``keys = patches x (4 if data.flip else 1)``. A freshly computed target is rounded to float16 before
the loss uses it, so a step computes the same loss whether its target was cached or not, and
``--resume`` stays exact. ``teacher.json`` holds the teacher's weight hash: resuming with another
teacher is refused instead of silently mixing two teachers' targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.io.files import open_npy_memmaps

MAPS = ("output", "feature_sum")


class TeacherTargets:
    def __init__(
        self, folder: Path, patches: int, crop: int, flip: bool, teacher_sha: str, create: bool
    ) -> None:
        self.folder = Path(folder)
        self.flip_states = 4 if flip else 1
        keys = patches * self.flip_states
        shapes: dict[str, tuple[tuple[int, ...], Any]] = {m: ((keys, crop, crop), np.float16) for m in MAPS}
        shapes["have"] = ((keys,), np.uint8)
        stamp = self.folder / "teacher.json"
        if not create and (
            not stamp.is_file() or json.loads(stamp.read_text()).get("teacher_sha256") != teacher_sha
        ):
            raise ConfigError(
                f"--resume: {self.folder} holds targets of another teacher (or none); resume with the "
                "same --teacher or start a new run"
            )
        self.arrays: dict[str, np.memmap] = open_npy_memmaps(self.folder, shapes, create, "teacher target file")
        if create:
            stamp.write_text(json.dumps({"teacher_sha256": teacher_sha}))

    @staticmethod
    def nbytes(patches: int, crop: int, flip: bool) -> int:
        keys = patches * (4 if flip else 1)
        return keys * (len(MAPS) * crop * crop * 2 + 1)

    def _keys(self, patch: torch.Tensor, flips: torch.Tensor) -> np.ndarray:
        idx = patch.cpu().numpy().astype(np.int64)
        if self.flip_states == 1:
            return idx
        code = (flips[:, 0].long() * 2 + flips[:, 1].long()).cpu().numpy()
        return idx * 4 + code

    def get(
        self,
        patch: torch.Tensor,
        flips: torch.Tensor,
        compute: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        like: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, channel-summed feature), each N x 1 x S x S, for this batch.

        ``compute(mask)`` runs the teacher on the samples selected by the boolean ``mask`` and
        returns their (output, feature); it is called only when some key is not stored yet.
        """
        keys = self._keys(patch, flips)
        have = np.asarray(self.arrays["have"][keys]) > 0
        missing = ~have
        if missing.any():
            out, feat = compute(torch.from_numpy(missing))
            new = {
                "output": out[:, 0].detach().to(torch.float16).cpu().numpy(),
                "feature_sum": feat.sum(1).detach().to(torch.float16).cpu().numpy(),
            }
            rows = keys[missing]
            # a pool smaller than a batch repeats a key: numpy's fancy assignment keeps the last copy
            for m in MAPS:
                self.arrays[m][rows] = new[m]
            self.arrays["have"][rows] = 1
        maps = [
            torch.from_numpy(np.asarray(self.arrays[m][keys], dtype=np.float32)).to(like.device)[:, None]
            for m in MAPS
        ]
        return maps[0], maps[1]

    def flush(self) -> None:
        for arr in self.arrays.values():
            arr.flush()
