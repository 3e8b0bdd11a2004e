"""Training recipes: typed dataclasses, one comment per key, validated on load.

A recipe is a YAML mapping with ``kind`` (teacher | lut | mini) and the sections below. An unknown
key, a wrong type or an out-of-range value raises ``ConfigError`` naming the key path (for example
``loss.ssim: expected a number >= 0, got -1``), so a typo never silently trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.io.images import IR16_MODES

KINDS = ("teacher", "lut", "mini")
# The checkpoint kind each training kind produces (``lutfuse_deploy.MODEL_KINDS``).
MODEL_KIND = {"teacher": "mmdrfuse-teacher", "lut": "lutfuse", "mini": "mmdrfuse-student"}
METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR")


def _opt(
    default: Any, lo: float | None = None, hi: float | None = None, choices: tuple[Any, ...] | None = None
) -> Any:
    """A dataclass field with its allowed range kept as metadata (checked by ``_build``)."""
    meta = {"lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    root: str | None = field(default=None)  # folder holding one sub-folder per set; None: <data_root>/train
    sets: list[str] = _opt(["msrs", "llvip", "roadscene"])  # noqa: RUF009 - sub-folders of root (ir/, vi/)
    crop: int = _opt(128, lo=16)  # square random crop side in pixels (even: the teacher halves it)
    flip: bool = _opt(True)  # random horizontal and vertical flips
    workers: int = _opt(0, lo=0)  # DataLoader worker processes (0: load in the main process)
    cache: bool = _opt(True)  # decode every pair once and keep it in memory (uint8)
    patches: int = _opt(2048, lo=1)  # mini only: size of the fixed patch pool the refresh banks index
    # pairs per set kept out of training (evenly spaced by name) and validated on instead of val.root:
    # validation then comes from the same cameras and scenes as the training data, every set weighed equally
    holdout: int = _opt(0, lo=0)
    # 16-bit IR (radiometric cameras) -> 8 bits as `fuse --ir16` maps it, so a model trains on the frames it
    # will fuse; "refuse": a 16-bit IR image stops the run (8-bit sets never read it); `train --ir16` sets it
    ir16: str = _opt("refuse", choices=IR16_MODES)


@dataclass
class ValConfig:
    # folder with ir/ and vi/; None: <data_root>/ivif/llvip_test, or the held-out pairs when data.holdout > 0
    root: str | None = field(default=None)
    every: int = _opt(250, lo=0)  # validate every N steps and at the end (0: only at the end)
    pairs: int = _opt(4, lo=1)  # how many pairs (sorted by name) to validate on; with data.holdout: per set
    crop: int = _opt(256, lo=0)  # centre crop side (0: whole image); keeps validation cheap
    tanh_map: str = _opt("minmax", choices=("minmax", "clip"))  # MMDRFuse tanh -> 8 bit, as `fuse` does
    # which checkpoint is "best": the largest sum of weight x mean metric over the validation pairs
    score: dict[str, float] = _opt({"VIF": 1.0, "Qabf": 1.0, "SSIM": 0.5})  # noqa: RUF009


@dataclass
class OptimConfig:
    lr: float = _opt(1e-3, lo=0.0)  # Adam learning rate at the start (after warm-up)
    lr_min: float = _opt(1e-5, lo=0.0)  # cosine decay ends here at the last step
    warmup: int = _opt(0, lo=0)  # linear warm-up steps
    weight_decay: float = _opt(0.0, lo=0.0)  # AdamW decoupled weight decay
    grad_clip: float = _opt(0.0, lo=0.0)  # clip the global gradient norm (0: off)
    lut_lr_scale: float = _opt(1.0, lo=0.0)  # lut only: multiplier on lr for the table (vs the context net)


@dataclass
class TeacherLoss:
    intensity: float = _opt(1.0, lo=0.0)  # L1 towards max(ir, vi)
    gradient: float = _opt(10.0, lo=0.0)  # L1 of Sobel magnitude towards max(|grad ir|, |grad vi|)
    gradient_gain: float = _opt(
        1.0, lo=0.0
    )  # x the gradient target: > 1 asks for more detail than either source
    gradient_signed: bool = _opt(True)  # match the stronger source's gradient vector (False: magnitude only)
    ssim: float = _opt(1.0, lo=0.0)  # 1 - (SSIM(F, ir) + SSIM(F, vi)) / 2
    perceptual: float = _opt(0.0, lo=0.0)  # VGG-19 term; needs vgg_weights
    vgg_weights: str | None = _opt(
        None
    )  # torchvision-layout VGG-19 state_dict (.pth/.safetensors); no download


@dataclass
class LutLoss:
    distill_l1: float = _opt(1.0, lo=0.0)  # L1 between the LUT's fused Y and the teacher output
    distill_ssim: float = _opt(1.0, lo=0.0)  # 1 - SSIM(LUT Y, teacher)
    intensity: float = _opt(0.0, lo=0.0)  # optional direct fusion terms, as for the teacher
    gradient: float = _opt(0.0, lo=0.0)
    gradient_gain: float = _opt(1.0, lo=0.0)
    gradient_signed: bool = _opt(True)
    ssim: float = _opt(0.0, lo=0.0)
    tv: float = _opt(1e-4, lo=0.0)  # total variation (squared differences) over the table's 4 axes
    monotonic: float = _opt(10.0, lo=0.0)  # penalise a table decreasing along the y and ir axes
    # against IR noise in flat regions (both 0: off): squared second differences of the table along
    # the IR axis (zero for a table linear in IR), and L1 between fused and visible gradients where
    # both sources' Sobel magnitudes are below flat_edge ([0, 1] scale: no detail, only sensor noise)
    ir_curvature: float = _opt(0.0, lo=0.0)
    flat_detail: float = _opt(0.0, lo=0.0)
    flat_edge: float = _opt(0.15, lo=0.0, hi=1.0)
    init: str = _opt(
        "teacher", choices=("analytic", "teacher")
    )  # table start: rule, or binned teacher samples
    init_batches: int = _opt(8, lo=1)  # teacher init: batches of crops sampled into the table


@dataclass
class MiniLoss:
    intensity: float = _opt(1.0, lo=0.0)  # comprehensive loss: L1 towards max(ir, vi)
    gradient: float = _opt(10.0, lo=0.0)  # ... Sobel magnitude towards the max of the sources'
    gradient_gain: float = _opt(1.0, lo=0.0)  # ... x the gradient target (> 1: sharper than either source)
    gradient_signed: bool = _opt(True)  # ... vector (True) or magnitude-only gradient matching
    ssim: float = _opt(1.0, lo=0.0)  # ... SSIM with both sources
    perceptual: float = _opt(0.0, lo=0.0)  # ... VGG-19 term; needs vgg_weights
    vgg_weights: str | None = _opt(None)
    distill_feature: float = _opt(5.0, lo=0.0)  # digestible distillation on the 4-channel feature
    distill_output: float = _opt(5.0, lo=0.0)  # ... and on the output (channel-summed, L2-normalised maps)
    output_map: str = _opt(
        "minmax", choices=("raw", "minmax")
    )  # content/refresh terms see the output per-crop
    #   min-max stretched, as `fuse` maps tanh by default (minmax), or the raw tanh on the [0, 1] scale (raw)
    refresh: float = _opt(10.0, lo=0.0)  # dynamic refresh: pull towards a patch's best past output (x gap)
    refresh_dtype: str = _opt("uint8", choices=("uint8", "float16"))  # history bank storage (memmap on disk)
    # start: "teacher" copies the teacher's last conv (4->1), as the official training does; "max" sets
    # both convs to tanh(2 max(ir, vi) - 1), the rule the intensity term asks for; "random": torch's init;
    # "checkpoint": every weight from init_checkpoint (a trained student), to fine-tune it
    init: str = _opt("teacher", choices=("random", "teacher", "max", "checkpoint"))
    init_checkpoint: str | None = _opt(None)  # an mmdrfuse-student .safetensors; only with init: checkpoint
    cache_teacher: bool = _opt(True)  # compute the teacher once per pool patch, keep its targets on disk
    # distillation from a LUT-Fuse checkpoint (both weights 0: off, and lut_teacher must be unset):
    # lut_output is L1 between the student's and LUT-Fuse's fused Y, each min-max stretched per crop
    # (what `fuse` does to the student); lut_context matches the student's 4-channel feature to the
    # channel-summed, L2-normalised map of LUT-Fuse's context-network features (as distill_feature does)
    lut_teacher: str | None = _opt(None)  # LUT-Fuse checkpoint (.safetensors) distilled by lut_*
    lut_output: float = _opt(0.0, lo=0.0)
    lut_context: float = _opt(0.0, lo=0.0)

    @property
    def distils(self) -> bool:
        """Whether the teacher is needed at all (the forward pass is most of a step's cost)."""
        return bool(self.distill_feature or self.distill_output)

    @property
    def uses_teacher(self) -> bool:
        """Whether ``--teacher`` applies: a distillation term, or the student's last conv copied from it."""
        return self.distils or self.init == "teacher"

    @property
    def distils_lut(self) -> bool:
        return bool(self.lut_output or self.lut_context)

    @property
    def keeps_teacher_targets(self) -> bool:
        return self.cache_teacher and self.distils

    @property
    def keeps_lut_targets(self) -> bool:
        return self.cache_teacher and self.distils_lut

    @property
    def uses_pool(self) -> bool:
        """Refresh banks and cached targets index a fixed patch pool (``data.patches``)."""
        return bool(self.refresh) or self.keeps_teacher_targets or self.keeps_lut_targets


@dataclass
class LutModel:
    nodes: int = _opt(17, choices=(16, 17))  # 16: official lattice; 17: covers 0..255 fully
    cse_width: int = _opt(16, lo=1)  # context network width
    cse_depth: int = _opt(3, lo=0)  # context network residual blocks
    context_scale: float = _opt(1.0, lo=0.01, hi=1.0)  # run the context net at this scale (fast variant)


@dataclass
class Recipe:
    kind: str = _opt("teacher", choices=KINDS)  # what this recipe trains
    seed: int = _opt(0, lo=0)  # seeds model init, crops and flips: same seed, same run on CPU
    steps: int = _opt(1000, lo=1)  # optimiser steps (each takes batch_size crops per process)
    batch_size: int = _opt(8, lo=1)  # crops per step per process
    threads: int = _opt(0, lo=0)  # torch CPU threads (0: torch's default)
    log_every: int = _opt(10, lo=1)  # log line / progress-bar update interval in steps
    save_every: int = _opt(100, lo=1)  # write the last checkpoint and the resume state every N steps
    teacher: str | None = _opt(None)  # lut/mini: teacher checkpoint (--teacher overrides)
    data: DataConfig = field(default_factory=DataConfig)
    val: ValConfig = field(default_factory=ValConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: Any = None  # TeacherLoss | LutLoss | MiniLoss, chosen by kind
    model: LutModel | None = None  # lut only: lattice and context network

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def uses_teacher(self) -> bool:
        """Whether a teacher checkpoint applies: LUT-Fuse always distils one, the mini only with a
        distillation term or ``loss.init: teacher`` (a mini distilling LUT-Fuse alone needs none)."""
        return self.kind == "lut" or (self.kind == "mini" and self.loss.uses_teacher)


LOSSES: dict[str, type] = {"teacher": TeacherLoss, "lut": LutLoss, "mini": MiniLoss}


def _fail(where: str, msg: str) -> typing.NoReturn:
    raise ConfigError(f"{where}: {msg}")


def _check_value(value: Any, tp: Any, where: str, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(value, inner, where, meta)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list) or not value:
            _fail(where, f"expected a non-empty list, got {value!r}")
        return [_check_value(v, item, f"{where}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not value:
            _fail(where, f"expected a non-empty mapping, got {value!r}")
        out = {}
        for k, v in value.items():
            if k not in METRICS:
                _fail(f"{where}.{k}", f"unknown metric (known: {', '.join(METRICS)})")
            out[k] = _check_value(v, float, f"{where}.{k}", {})
        return out
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, f"expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, f"expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            _fail(where, f"expected a finite number, got {value!r}")
    elif tp is str and (not isinstance(value, str) or not value):
        _fail(where, f"expected a non-empty string, got {value!r}")
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        _fail(where, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
    if lo is not None and value < lo:
        _fail(where, f"expected a number >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        _fail(where, f"expected a number <= {hi}, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and checking every value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        _fail(where, f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            _fail(f"{where}.{key}" if where else str(key), f"unknown key (allowed: {', '.join(known)})")
    values = {}
    for name, value in raw.items():
        path = f"{where}.{name}" if where else name
        values[name] = _check_value(value, hints[name], path, known[name].metadata)
    return cls(**values)


def recipe_from_dict(raw: Any, source: str = "recipe") -> Recipe:
    """Validate a parsed YAML mapping into a ``Recipe`` (ConfigError names the bad key)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of recipe keys")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{source}: kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    raw = dict(raw)
    loss_raw, model_raw = raw.pop("loss", None), raw.pop("model", None)
    try:
        recipe = _build(Recipe, raw, "")
        recipe.loss = _build(LOSSES[kind], loss_raw, "loss")
        if kind == "lut":
            recipe.model = _build(LutModel, model_raw, "model")
        elif model_raw is not None:
            _fail("model", f"only lut recipes take a model section, this one is kind {kind}")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _cross_checks(recipe, source)
    return recipe


def _cross_checks(r: Recipe, source: str) -> None:
    if r.data.crop % 2:
        raise ConfigError(
            f"{source}: data.crop: must be even (the teacher has a stride-2 level), got {r.data.crop}"
        )
    if r.val.crop % 2:
        raise ConfigError(f"{source}: val.crop: must be even, got {r.val.crop}")
    from lutfuse_deploy.metrics.fusion import VIF_MIN_SIDE

    if 0 < r.val.crop < VIF_MIN_SIDE:
        raise ConfigError(
            f"{source}: val.crop: {r.val.crop} px is below the {VIF_MIN_SIDE} px the validation metrics need "
            f"(4-scale VIF); use 0 (whole image) or an even size >= {VIF_MIN_SIDE + VIF_MIN_SIDE % 2}"
        )
    if r.teacher is not None and not r.uses_teacher:
        raise ConfigError(f"{source}: teacher: set, but this recipe distils no teacher (it would be ignored)")
    if r.data.holdout and r.val.root:
        raise ConfigError(
            f"{source}: val.root: the recipe validates on its held-out pairs (data.holdout); set one of the two"
        )
    if getattr(r.loss, "flat_detail", 0.0) > 0 and r.loss.flat_edge <= 0:
        raise ConfigError(f"{source}: loss.flat_edge: must be > 0 when loss.flat_detail is on (no pixel is flat)")
    if r.kind == "mini" and r.loss.distils_lut != (r.loss.lut_teacher is not None):
        raise ConfigError(
            f"{source}: loss.lut_teacher: "
            + ("needed by loss.lut_output / loss.lut_context" if r.loss.distils_lut
               else "set, but loss.lut_output and loss.lut_context are 0 (it would be ignored)")
        )
    if r.kind == "mini" and (r.loss.init == "checkpoint") != (r.loss.init_checkpoint is not None):
        raise ConfigError(
            f"{source}: loss.init_checkpoint: "
            + ("needed by loss.init: checkpoint" if r.loss.init == "checkpoint"
               else f"set, but loss.init is {r.loss.init!r} (it would be ignored; use init: checkpoint)")
        )
    vgg = getattr(r.loss, "vgg_weights", None)
    if getattr(r.loss, "perceptual", 0.0) > 0 and not vgg:
        raise ConfigError(
            f"{source}: loss.perceptual: needs loss.vgg_weights (a local VGG-19 file; nothing is downloaded)"
        )


def load_recipe(path: str | Path, kind: str | None = None) -> Recipe:
    """Read and validate a recipe file; ``kind`` (from the command line) must match the file's."""
    from lutfuse_deploy.io.files import read_yaml

    p = Path(path)
    raw = read_yaml(p, ConfigError, "recipe")
    recipe = recipe_from_dict(raw, str(p))
    if kind is not None and recipe.kind != kind:
        raise ConfigError(f"{p}: kind: this recipe trains {recipe.kind!r}, not {kind!r}")
    return recipe


def disk_bytes(recipe: Recipe) -> dict[str, int]:
    """Bytes a mini recipe keeps on disk (memmaps; at most that much page cache) in its run folder."""
    if recipe.kind != "mini":
        return {}
    from lutfuse_deploy.train.refresh import RefreshBank
    from lutfuse_deploy.train.targets import TeacherTargets

    d, loss = recipe.data, recipe.loss
    out = {}
    if loss.refresh:
        out["refresh banks"] = RefreshBank.nbytes(d.patches, d.crop, loss.refresh_dtype)
    if loss.keeps_teacher_targets:
        out["teacher targets"] = TeacherTargets.nbytes(d.patches, d.crop, d.flip)
    if loss.keeps_lut_targets:
        out["LUT-Fuse targets"] = TeacherTargets.nbytes(d.patches, d.crop, d.flip)
    return out
