"""``manifest.json``: the metadata that travels with every engine and build bundle.

A serialized TensorRT engine only runs on the TensorRT version and GPU architecture that built it,
and TensorRT's own failure on a mismatch is a crash or a cryptic log line. The manifest records
what the engine is (ONNX and engine sha256, kind, precision, shape profile, flags, TensorRT version,
GPU, compute capability, build time) so that loading can refuse a mismatch in one clear sentence and
a rebuild of an identical engine can be skipped.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lutfuse_deploy import __version__
from lutfuse_deploy.errors import EngineError
from lutfuse_deploy.io.files import sha256_file, write_json_atomic

MANIFEST_NAME = "manifest.json"
FORMAT = "lutfuse-engine-manifest/1"
REQUIRED = (
    "format",
    "status",
    "target",
    "model",
    "kind",
    "io",
    "onnx_file",
    "onnx_sha256",
    "precision",
    "shapes",
    "flags",
    "compute_capability",
    "gpu_name",
    "tensorrt_version",
    "tensorrt_major",
    "build_time",
)
# What makes two builds the same engine (the TensorRT version is compared on its own: a bundle does
# not know it until the device builds).
IDENTITY = (
    "onnx_sha256",
    "kind",
    "io",
    "precision",
    "shapes",
    "flags",
    "workspace_gib",
    "dla_core",
    "calibration_digest",
    "check_digest",
    "int8_tolerance",
    "compute_capability",
    "tensorrt_major",
    "version_compatible",
    "hardware_compatibility",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest dict in a fixed key order; unknown fields are kept after the known ones."""
    base: dict[str, Any] = {
        "format": FORMAT,
        "status": "bundle",  # "bundle": not built yet; "built": engine_file holds the engine
        "target": None,
        "model": None,
        "kind": None,
        "io": None,
        "onnx_file": None,
        "onnx_sha256": None,
        "opset": None,
        "precision": None,
        "shapes": None,
        "flags": [],
        "workspace_gib": None,
        "dla_core": None,
        "calibration_digest": None,
        "calibration_cache": None,
        "check_digest": None,  # INT8 Q/DQ: the pairs the quantised graph was measured on (never calibrated on)
        "int8_tolerance": None,  # INT8 Q/DQ: the --int8-tolerance it was held to (int8_check: what it measured)
        "compute_capability": None,
        "gpu_name": None,
        "tensorrt_version": None,
        "tensorrt_major": None,
        "version_compatible": False,  # later TensorRT versions may load it (BuilderFlag.VERSION_COMPATIBLE)
        "hardware_compatibility": "none",  # "none", "same-cc" or "ampere+" (HardwareCompatibilityLevel)
        "engine_file": None,
        "engine_sha256": None,
        "layer_report": None,  # per-layer JSON beside the engine (engine inspector / trtexec --exportLayerInfo)
        "build_time": utc_now(),
        "build_seconds": None,
        "built_by": f"lutfuse-deploy {__version__}",
    }
    base.update(fields)
    return base


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError:
        raise EngineError(f"no engine manifest at {path}") from None
    except ValueError as exc:
        raise EngineError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EngineError(f"{path}: not a lutfuse-deploy engine manifest (format {FORMAT})")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise EngineError(f"{path}: manifest lacks {', '.join(missing)}")
    return data


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(path, manifest)


def manifest_for_engine(engine: Path) -> Path:
    """``X.manifest.json`` beside the engine, else ``manifest.json`` in its folder."""
    side = engine.with_suffix(".manifest.json")
    return side if side.is_file() else engine.parent / MANIFEST_NAME


def _same_version(a: str, b: str) -> bool:
    """TensorRT plans need the same version; compare the first three fields (10.3.0 == 10.3.0.30)."""
    return a.split(".")[:3] == b.split(".")[:3]


def _cc(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def runs_on(manifest: dict[str, Any], compute_capability: str) -> bool:
    """Whether the engine's hardware compatibility admits a GPU of ``compute_capability``."""
    built = str(manifest["compute_capability"])
    if manifest.get("hardware_compatibility") == "ampere+":
        return _cc(compute_capability) >= (8, 0)
    return built == compute_capability


def loads_with(manifest: dict[str, Any], tensorrt_version: str) -> bool:
    """Whether TensorRT ``tensorrt_version`` loads the engine: the building version only, or that
    version and any later one for a version-compatible engine."""
    built = str(manifest["tensorrt_version"])
    if manifest.get("version_compatible"):
        return _version(tensorrt_version) >= _version(built)
    return _same_version(built, tensorrt_version)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def check_runtime(
    manifest: dict[str, Any], *, compute_capability: str, gpu_name: str, tensorrt_version: str
) -> None:
    """Refuse an engine built for another GPU architecture or TensorRT version, in one sentence
    (honouring the engine's version and hardware compatibility)."""
    if manifest.get("status") != "built" or not manifest.get("engine_file"):
        raise EngineError(
            f"the manifest says this is an unbuilt bundle for {manifest.get('target')}: run its build.sh on the device"
        )
    built_cc, built_trt = str(manifest["compute_capability"]), str(manifest["tensorrt_version"])
    where = f"{manifest.get('gpu_name')} (sm {built_cc}) with TensorRT {built_trt}"
    here = f"{gpu_name} (sm {compute_capability}) with TensorRT {tensorrt_version}"
    if not runs_on(manifest, compute_capability):
        scope = "Ampere or later" if manifest.get("hardware_compatibility") == "ampere+" else f"sm {built_cc}"
        raise EngineError(
            f"engine was built for {where} and runs on {scope} only; this machine has {here}: rebuild it "
            f"here with `lutfuse-deploy build-engine --onnx ... --target auto`"
        )
    if not loads_with(manifest, tensorrt_version):
        scope = (
            f"TensorRT {built_trt} or later"
            if manifest.get("version_compatible")
            else f"TensorRT {built_trt} only (plans do not load across versions; --version-compatible lifts that)"
        )
        raise EngineError(
            f"engine was built with TensorRT {built_trt} and loads with {scope}; this machine has "
            f"TensorRT {tensorrt_version}: rebuild it here"
        )


def check_engine_file(manifest: dict[str, Any], engine: Path) -> None:
    """The engine on disk is the one the manifest describes (not a stale or swapped file)."""
    want = manifest.get("engine_sha256")
    if not engine.is_file():
        raise EngineError(f"no engine file at {engine}")
    if not want:
        raise EngineError(f"{engine.name}: its manifest has no engine_sha256")
    if sha256_file(engine) != want:
        raise EngineError(f"{engine.name} does not match its manifest (sha256 differs): rebuild it")


def identity(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest.get(k) for k in IDENTITY}


def reuse_decision(existing: dict[str, Any] | None, wanted: dict[str, Any], folder: Path) -> tuple[bool, str]:
    """Whether ``folder`` already holds the engine ``wanted`` describes, and why (or why not)."""
    if existing is None:
        return False, "no previous build"
    if existing.get("status") != "built" or not existing.get("engine_file"):
        return False, "previous output is an unbuilt bundle"
    old, new = identity(existing), identity(wanted)
    diff = [k for k in IDENTITY if old[k] != new[k]]
    if diff:
        return False, f"{diff[0]} changed ({old[diff[0]]!r} -> {new[diff[0]]!r})"
    want_trt = wanted.get("tensorrt_version")
    if want_trt and not _same_version(str(existing.get("tensorrt_version")), str(want_trt)):
        return False, f"TensorRT changed ({existing.get('tensorrt_version')} -> {want_trt})"
    engine = folder / str(existing["engine_file"])
    if not engine.is_file():
        return False, "engine file is missing"
    if sha256_file(engine) != existing.get("engine_sha256"):
        return False, "engine file does not match its manifest"
    return True, f"identical engine already built ({existing.get('build_time')})"
