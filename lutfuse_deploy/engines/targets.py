"""Deployment targets are data: ``recipes/targets/*.yaml``, loaded and validated here.

A target names a device class (compute capability, the TensorRT major it ships, memory, DLA) and
the defaults a build uses there (precision, shape profile, workspace); ``--target auto`` lives in
``engines.local_gpu``, so this module imports nothing else of the package's engines. Image sizes are written
WIDTHxHEIGHT everywhere (``640x480``), as users and papers write them; ``ShapeProfile`` keeps
(height, width) pairs inside, in TensorRT's N x C x H x W order. Every key is typed and
documented once, in ``TARGET_KEYS``; an unknown key or a bad value is a ``ConfigError`` naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.paths import REPO_ROOT

PRECISIONS = ("fp32", "fp16", "int8", "best")
TENSORRT_MAJORS = (10, 11)

# key: (python type, required, what it means)
TARGET_KEYS: dict[str, tuple[type, bool, str]] = {
    "name": (str, True, "target name, as in --target NAME and engines/NAME/"),
    "description": (str, False, "one line for `lutfuse-deploy targets`"),
    "gpu_names": (list, False, "substrings of the GPU name (or Jetson model) that --target auto matches"),
    "compute_capability": (str, True, 'CUDA compute capability as "MAJOR.MINOR", e.g. "8.7"'),
    "tensorrt_major": (int, True, "TensorRT major version the device runs (10 or 11)"),
    "tensorrt_min": (str, False, "oldest TensorRT version of that major the device can have, e.g. 11.4"),
    "software": (str, False, "the software stack, e.g. JetPack 6.x with TensorRT 10.3"),
    "memory_gb": (list, False, "memory sizes of the variants, GB"),
    "integrated": (bool, False, "shares memory with the CPU (Jetson); engines are built on the device"),
    "dla_cores": (int, False, "number of DLA cores (0: none)"),
    "dla_unsupported_ops": (list, False, "ONNX ops the DLA cannot run"),
    "precisions": (list, True, "precisions this target may build: fp32 fp16 int8 best"),
    "default_precision": (str, True, "precision when --precision is not given"),
    "default_shapes": (str, True, "default shape profile MIN:OPT:MAX, each WIDTHxHEIGHT"),
    "workspace_gib": (float, False, "smallest builder workspace limit, GiB (raised to what the model needs)"),
    "anchors": (list, False, "published latencies (model, width, height, latency_ms, source)"),
}
ANCHOR_KEYS: dict[str, type] = {"model": str, "width": int, "height": int, "latency_ms": float, "source": str}


SIZE_NOTATION = "WIDTHxHEIGHT"


def size_text(hw: tuple[int, int]) -> str:
    """(height, width) as the WIDTHxHEIGHT users write."""
    return f"{hw[1]}x{hw[0]}"


@dataclass(frozen=True)
class ShapeProfile:
    """An optimisation profile over image size: MIN:OPT:MAX, each kept as (height, width); batch is 1.
    Written and read as WIDTHxHEIGHT (``str``, ``parse_shapes``)."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def __str__(self) -> str:
        return ":".join(size_text(hw) for hw in (self.min, self.opt, self.max))

    def to_dict(self) -> dict[str, dict[str, int]]:
        """Named axes, so a reader cannot swap them."""
        return {k: {"width": hw[1], "height": hw[0]} for k, hw in (("min", self.min), ("opt", self.opt),
                                                                    ("max", self.max))}

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def contains(self, h: int, w: int) -> bool:
        return self.min[0] <= h <= self.max[0] and self.min[1] <= w <= self.max[1]


_WH = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_shapes(text: str) -> ShapeProfile:
    """``MIN:OPT:MAX`` (each ``WIDTHxHEIGHT``) or one ``WxH`` for a static profile."""
    parts = str(text).split(":")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise InputError(
            f"bad shapes {text!r}: expected MIN:OPT:MAX as WIDTHxHEIGHT, e.g. 128x128:640x480:1920x1080"
        )
    dims: list[tuple[int, int]] = []
    for part in parts:
        m = _WH.match(part)
        if not m:
            raise InputError(f"bad shapes {text!r}: {part!r} is not WIDTHxHEIGHT (e.g. 640x480)")
        w, h = int(m.group(1)), int(m.group(2))
        if h < 3 or w < 3:
            raise InputError(f"bad shapes {text!r}: {w}x{h} is smaller than 3x3")
        dims.append((h, w))
    lo, opt, hi = dims
    for axis, label in ((0, "height"), (1, "width")):
        if not lo[axis] <= opt[axis] <= hi[axis]:
            raise InputError(f"bad shapes {text!r}: {label} must satisfy MIN <= OPT <= MAX")
    return ShapeProfile(lo, opt, hi)


# --hardware-compat NAME -> TensorRT's HardwareCompatibilityLevel member
HARDWARE_LEVELS = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class Compatibility:
    """Where an engine may run besides the GPU and TensorRT version that built it.

    ``version_compatible``: later TensorRT versions load it (BuilderFlag.VERSION_COMPATIBLE; the
    runtime must allow the engine's host code). ``hardware``: ``none`` (the building GPU's compute
    capability), ``same-cc`` (any GPU of that compute capability) or ``ampere+`` (any discrete GPU
    from Ampere, sm 8.0, on).
    """

    version_compatible: bool = False
    hardware: str = "none"

    def __post_init__(self) -> None:
        if self.hardware not in HARDWARE_LEVELS:
            raise InputError(
                f"unknown hardware compatibility {self.hardware!r}: choose one of {', '.join(HARDWARE_LEVELS)}"
            )

    @property
    def hardware_level(self) -> str:
        return HARDWARE_LEVELS[self.hardware]

    def to_dict(self) -> dict[str, Any]:
        return {"version_compatible": self.version_compatible, "hardware": self.hardware}


@dataclass(frozen=True)
class Anchor:
    """A published latency; never one this project measured."""

    model: str
    width: int
    height: int
    latency_ms: float
    source: str


@dataclass(frozen=True)
class Target:
    name: str
    compute_capability: str
    tensorrt_major: int
    precisions: tuple[str, ...]
    default_precision: str
    default_shapes: ShapeProfile
    description: str = ""
    gpu_names: tuple[str, ...] = ()
    software: str = ""
    tensorrt_min: str = ""
    memory_gb: tuple[float, ...] = ()
    integrated: bool = False
    dla_cores: int = 0
    dla_unsupported_ops: tuple[str, ...] = ()
    workspace_gib: float = 1.0
    anchors: tuple[Anchor, ...] = ()
    path: Path | None = None

    @property
    def smallest_memory_gib(self) -> float | None:
        """The smallest variant's memory (GB as sold, in GiB), or None where the target does not say."""
        return min(self.memory_gb) * 1e9 / (1 << 30) if self.memory_gb else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "compute_capability": self.compute_capability,
            "tensorrt_major": self.tensorrt_major,
            "software": self.software,
            "tensorrt_min": self.tensorrt_min,
            "memory_gb": list(self.memory_gb),
            "integrated": self.integrated,
            "dla_cores": self.dla_cores,
            "dla_unsupported_ops": list(self.dla_unsupported_ops),
            "precisions": list(self.precisions),
            "default_precision": self.default_precision,
            "default_shapes": str(self.default_shapes),
            "workspace_gib": self.workspace_gib,
            "anchors": [a.__dict__ for a in self.anchors],
        }


def targets_dir() -> Path:
    """``$LUTFUSE_TARGETS`` or ``recipes/targets`` in the checkout."""
    env = os.environ.get("LUTFUSE_TARGETS")
    return Path(env).expanduser() if env else REPO_ROOT / "recipes" / "targets"


def _typed(where: str, key: str, value: Any, want: type) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key}: expected {want.__name__}, got {value!r}")
    return value


def _str_list(where: str, key: str, value: list[Any]) -> tuple[str, ...]:
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: {key}: expected a list of strings, got {item!r}")
    return tuple(value)


def _anchors(where: str, value: list[Any]) -> tuple[Anchor, ...]:
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: anchors[{i}]: expected a mapping, got {item!r}")
        unknown = sorted(set(item) - set(ANCHOR_KEYS))
        missing = sorted(set(ANCHOR_KEYS) - set(item))
        if unknown or missing:
            bad = f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}"
            raise ConfigError(f"{where}: anchors[{i}]: {bad}")
        vals = {k: _typed(where, f"anchors[{i}].{k}", item[k], t) for k, t in ANCHOR_KEYS.items()}
        out.append(Anchor(**vals))
    return tuple(out)


def target_from_dict(data: Any, where: str, path: Path | None = None) -> Target:
    """Validate one target mapping; every problem names its key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of target keys")
    for key in data:
        if key not in TARGET_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(TARGET_KEYS)})")
    for key, (_, required, _doc) in TARGET_KEYS.items():
        if required and key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
    v = {key: _typed(where, key, data[key], TARGET_KEYS[key][0]) for key in data}
    if not re.fullmatch(r"\d+\.\d+", v["compute_capability"]):
        raise ConfigError(
            f'{where}: compute_capability: expected "MAJOR.MINOR" like "8.7", got {v["compute_capability"]!r}'
        )
    if v["tensorrt_major"] not in TENSORRT_MAJORS:
        raise ConfigError(
            f"{where}: tensorrt_major: expected one of {TENSORRT_MAJORS}, got {v['tensorrt_major']}"
        )
    precisions = _str_list(where, "precisions", v["precisions"])
    for p in precisions:
        if p not in PRECISIONS:
            raise ConfigError(
                f"{where}: precisions: unknown precision {p!r} (known: {', '.join(PRECISIONS)})"
            )
    if v["default_precision"] not in precisions:
        raise ConfigError(f"{where}: default_precision: {v['default_precision']!r} is not in precisions")
    try:
        shapes = parse_shapes(v["default_shapes"])
    except InputError as exc:
        raise ConfigError(f"{where}: default_shapes: {exc}") from None
    memory = v.get("memory_gb", [])
    for m in memory:
        if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
            raise ConfigError(f"{where}: memory_gb: expected positive numbers, got {m!r}")
    if v.get("tensorrt_min") and not re.fullmatch(rf"{v['tensorrt_major']}(\.\d+)*", v["tensorrt_min"]):
        raise ConfigError(
            f"{where}: tensorrt_min: expected a {v['tensorrt_major']}.x version, got {v['tensorrt_min']!r}"
        )
    if v.get("dla_cores", 0) < 0:
        raise ConfigError(f"{where}: dla_cores: must be >= 0")
    if v.get("workspace_gib", 1.0) <= 0:
        raise ConfigError(f"{where}: workspace_gib: must be > 0")
    return Target(
        name=v["name"],
        compute_capability=v["compute_capability"],
        tensorrt_major=v["tensorrt_major"],
        precisions=precisions,
        default_precision=v["default_precision"],
        default_shapes=shapes,
        description=v.get("description", ""),
        gpu_names=_str_list(where, "gpu_names", v.get("gpu_names", [])),
        software=v.get("software", ""),
        tensorrt_min=v.get("tensorrt_min", ""),
        memory_gb=tuple(float(m) for m in memory),
        integrated=v.get("integrated", False),
        dla_cores=v.get("dla_cores", 0),
        dla_unsupported_ops=_str_list(where, "dla_unsupported_ops", v.get("dla_unsupported_ops", [])),
        workspace_gib=v.get("workspace_gib", 1.0),
        anchors=_anchors(where, v.get("anchors", [])),
        path=path,
    )


def load_target_file(path: Path) -> Target:
    import yaml

    if not path.is_file():
        raise ConfigError(f"no such target file: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return target_from_dict(data, path.name, path)


def target_names() -> list[str]:
    folder = targets_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def list_targets() -> list[Target]:
    return [load_target_file(targets_dir() / f"{n}.yaml") for n in target_names()]


def load_target(name: str) -> Target:
    """A target by name (``recipes/targets/NAME.yaml``) or by path to a YAML file.

    ``auto`` (the local GPU's target) is ``engines.local_gpu.resolve_target``: targets are data and
    know nothing of GPUs or TensorRT.
    """
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return load_target_file(Path(name).expanduser())
    path = targets_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(target_names()) or "none found"
        raise ConfigError(f"unknown target {name!r}: choose one of {known}, auto, or a path to a target YAML")
    return load_target_file(path)
