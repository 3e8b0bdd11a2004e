"""From ``fuse``'s three paths to a plan: videos or image pairs, and every output named and checked
before any model is loaded (an output that is an input, or cannot be written, is refused first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.fuse.sinks import plan_outputs
from lutfuse_deploy.io.files import check_outputs
from lutfuse_deploy.io.images import ImagePair, find_pairs


def is_video_run(ir: Path, vi: Path, out: Path) -> bool:
    """Whether ``fuse`` was given videos; a video mixed with images is refused."""
    from lutfuse_deploy.io.video import VIDEO_SUFFIXES, import_av, is_video

    flags = {"--ir": is_video(ir), "--vi": is_video(vi), "--out": is_video(out)}
    if not any(flags.values()):
        return False
    if not all(flags.values()):
        names = " and ".join(k for k, v in flags.items() if not v)
        raise InputError(f"{names} must be video files too when one of --ir/--vi/--out is a video "
                         f"({', '.join(VIDEO_SUFFIXES)})")
    import_av()  # a missing extra is named before the model loads
    return True


@dataclass
class PairsPlan:
    """The image pairs of one ``fuse`` run and where each one's outputs go."""

    out: Path
    pairs: list[ImagePair]  # to fuse
    targets: dict[str, tuple[Path, Path | None]]  # name -> (PNG, raw .npy or None)
    problems: list[str] = field(default_factory=list)  # pairs that cannot be made (no partner, not an image)
    skipped: list[str] = field(default_factory=list)  # --skip-existing: outputs already there


def plan_pairs(ir: Path, vi: Path, out: Path, save_float: bool = False, skip_existing: bool = False,
               model: Path | None = None) -> PairsPlan:
    """Find the pairs, name their outputs, refuse outputs that are inputs or cannot be written, and
    with ``skip_existing`` leave out the pairs whose outputs are all there (a rerun continues)."""
    pairs, problems = find_pairs(ir, vi)
    targets = plan_outputs(pairs, out, save_float)
    inputs = [ir, vi, *([model] if model else []), *(f for p in pairs for f in (p.ir, p.vi))]
    check_outputs(files=[f for t in targets for f in t if f is not None],
                  folders=[out] if ir.is_dir() else [], inputs=inputs)
    plan = PairsPlan(out, [], {}, problems)
    for pair, target in zip(pairs, targets, strict=True):
        if skip_existing and all(f.is_file() for f in target if f is not None):
            plan.skipped.append(pair.name)
        else:
            plan.pairs.append(pair)
            plan.targets[pair.name] = target
    return plan
