"""The mini's on-disk teacher targets: computed once per (patch, flips) key, float16, tied to one teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.models import MMDRTeacher
from lutfuse_deploy.train.losses import digestible_loss
from lutfuse_deploy.train.targets import TeacherTargets


def _batch(patches: list[int], flips: list[tuple[bool, bool]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(patches)
    return {
        "ir": torch.randint(0, 256, (n, 1, 16, 16), generator=g).float(),
        "gray": torch.randint(0, 256, (n, 1, 16, 16), generator=g).float(),
        "patch": torch.tensor(patches),
        "flips": torch.tensor(flips),
    }


def _counting_teacher(batch: dict[str, torch.Tensor], calls: list[int]):
    torch.manual_seed(0)
    teacher = MMDRTeacher().eval()

    def compute(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(int(mask.sum()))
        with torch.no_grad():
            return teacher.forward_with_features(batch["ir"][mask], batch["gray"][mask])

    return teacher, compute


def test_targets_are_computed_once_per_key_and_rounded_to_float16(tmp_path: Path) -> None:
    store = TeacherTargets(tmp_path / "t", patches=4, crop=16, flip=True, teacher_sha="a", create=True)
    batch = _batch([0, 1, 2], [(False, False), (True, False), (False, False)])
    calls: list[int] = []
    teacher, compute = _counting_teacher(batch, calls)
    like = torch.zeros(1)
    out, feat = store.get(batch["patch"], batch["flips"], compute, like)
    assert calls == [3] and out.shape == feat.shape == (3, 1, 16, 16)
    with torch.no_grad():
        t_out, t_feat = teacher.forward_with_features(batch["ir"], batch["gray"])
    torch.testing.assert_close(out, t_out.half().float(), rtol=0, atol=0)
    torch.testing.assert_close(feat, t_feat.sum(1, keepdim=True).half().float(), rtol=0, atol=0)
    # the summed feature gives the digestible loss of the full 4-channel feature
    student = torch.rand(3, 4, 16, 16)
    assert abs(float(digestible_loss(student, feat)) - float(digestible_loss(student, t_feat))) < 1e-4

    again = store.get(batch["patch"], batch["flips"], compute, like)
    assert calls == [3]  # nothing recomputed
    assert torch.equal(again[0], out) and torch.equal(again[1], feat)
    # patch 1 in another flip state is another key: only it is computed
    other = _batch([1, 0], [(False, True), (False, False)], seed=1)
    _, compute_other = _counting_teacher(other, calls)
    store.get(other["patch"], other["flips"], compute_other, like)
    assert calls == [3, 1]
    assert int(np.load(tmp_path / "t" / "have.npy").sum()) == 4


def test_without_flips_the_key_is_the_patch(tmp_path: Path) -> None:
    store = TeacherTargets(tmp_path / "t", patches=3, crop=16, flip=False, teacher_sha="a", create=True)
    assert np.load(tmp_path / "t" / "have.npy").shape == (3,)
    batch = _batch([2, 2], [(False, False), (False, False)])
    calls: list[int] = []
    _, compute = _counting_teacher(batch, calls)
    store.get(batch["patch"], batch["flips"], compute, torch.zeros(1))
    assert calls == [2] and np.load(tmp_path / "t" / "have.npy").tolist() == [0, 0, 1]
    assert TeacherTargets.nbytes(3, 16, False) == 3 * (2 * 16 * 16 * 2 + 1)


def test_resume_refuses_another_teacher_or_missing_files(tmp_path: Path) -> None:
    TeacherTargets(tmp_path / "t", patches=2, crop=8, flip=False, teacher_sha="a", create=True)
    TeacherTargets(tmp_path / "t", patches=2, crop=8, flip=False, teacher_sha="a", create=False)
    with pytest.raises(ConfigError, match="targets of another teacher"):
        TeacherTargets(tmp_path / "t", patches=2, crop=8, flip=False, teacher_sha="b", create=False)
    with pytest.raises(ConfigError, match="has shape"):
        TeacherTargets(tmp_path / "t", patches=3, crop=8, flip=False, teacher_sha="a", create=False)
    (tmp_path / "t" / "output.npy").unlink()
    with pytest.raises(ConfigError, match="is missing"):
        TeacherTargets(tmp_path / "t", patches=2, crop=8, flip=False, teacher_sha="a", create=False)
    with pytest.raises(ConfigError, match="targets of another teacher"):
        TeacherTargets(tmp_path / "none", patches=2, crop=8, flip=False, teacher_sha="a", create=False)
