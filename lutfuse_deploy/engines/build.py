"""``build_engine``: the one function ``lutfuse-deploy build-engine`` calls.

Resolve the target, read the ONNX, plan the precision (refusing what the TensorRT version or the
device cannot do), then either build here (a local GPU with the target's compute capability and an
importable TensorRT), reuse an identical engine, or write a build bundle, optionally building it on
a remote device over ssh. Every refusal happens before anything is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lutfuse_deploy.engines import calibration as calib
from lutfuse_deploy.engines.bundle import (
    CALIB_CACHE,
    TIMING_CACHE,
    BundleSpec,
    bundle_dir,
    check_name,
    graph_rig_record,
    stage_bundle,
    staging_dir,
)
from lutfuse_deploy.engines.int8_check import int8_sets
from lutfuse_deploy.engines.local_gpu import LocalGpu, detect_gpu, resolve_target
from lutfuse_deploy.engines.manifest import MANIFEST_NAME, read_manifest, reuse_decision, write_manifest
from lutfuse_deploy.engines.onnx_info import (
    OnnxInfo,
    check_for_tensorrt,
    check_shapes,
    inspect_onnx,
    largest_layer_bytes,
)
from lutfuse_deploy.engines.precision import AUTOCAST_COMMAND, exact_name_patterns, plan_precision
from lutfuse_deploy.engines.targets import Compatibility, ShapeProfile, Target, parse_shapes, size_text
from lutfuse_deploy.engines.tensorrt import major_of, tensorrt_version, version_tuple, workspace_shortfall
from lutfuse_deploy.errors import EngineError, InputError, LutfuseError
from lutfuse_deploy.io.files import atomic_path

CALIBRATION_CACHE_DIR = ".calibration"


class NotBuildableHere(EngineError):
    """``require_build`` and this machine cannot build for the target (no TensorRT, another GPU)."""


@dataclass
class BuildRequest:
    onnx: Path
    target: str
    precision: str | None = None
    shapes: str | None = None
    calib: str | None = None
    workspace_gib: float | None = None
    out_root: Path = Path("engines")
    remote: str | None = None
    dla_core: int | None = None
    qdq: bool = False
    force: bool = False
    require_build: bool = False  # build here or fail (build.sh on the device uses it)
    name: str | None = None
    version_compatible: bool = False
    hardware_compat: str = "none"
    check_data: str | None = None  # INT8 Q/DQ: pairs to measure on (default: held out of --calib)
    int8_tolerance: str | None = None  # INT8 Q/DQ: "p99=4,max=32,float=0.5" (int8_check.Tolerance)
    progress: Callable[[str], None] | None = None  # one line per long step (the INT8 measurement)
    ir16: str = "refuse"  # how 16-bit IR in --calib / --check-data images becomes 8-bit (io.images.IR16_MODES)


@dataclass
class BuildResult:
    action: str  # "built", "reused", "bundle", "remote-built"
    folder: Path
    manifest: dict[str, Any]
    reason: str = ""
    engine: Path | None = None
    device_command: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "folder": str(self.folder),
            "engine": str(self.engine) if self.engine else None,
            "reason": self.reason,
            "device_command": self.device_command,
            "notes": self.notes,
            "manifest": self.manifest,
        }


def local_capability(target: Target) -> tuple[str | None, LocalGpu | None, str]:
    """(TensorRT version, GPU, reason) where a build for ``target`` can run here; (None, .., why not)."""
    version = tensorrt_version()
    if version is None:
        return None, None, "TensorRT is not installed here"
    if target.tensorrt_min and version_tuple(version) < version_tuple(target.tensorrt_min):
        return None, None, f"{target.name} needs TensorRT {target.tensorrt_min} or later; this machine has {version}"
    gpu = detect_gpu()
    if gpu is None:
        return None, None, "no NVIDIA GPU found here"
    if gpu.compute_capability != target.compute_capability:
        return (
            None,
            gpu,
            (
                f"this GPU ({gpu.name}, sm {gpu.compute_capability}) is not a {target.name} "
                f"(sm {target.compute_capability})"
            ),
        )
    return version, gpu, ""


def _calibration(
    req: BuildRequest, info: OnnxInfo, hw: tuple[int, int], needed: bool
) -> calib.CalibrationSet | None:
    if req.calib is None or not needed:
        return None
    data = calib.load_calibration(req.calib, vi_channels=info.vi_channels, hw=hw, ir16=req.ir16,
                                  ir_hw=_rig_ir_hw(info))
    record = graph_rig_record(info.sidecar) if info.rig_hw is not None else None
    if record is None:
        return data
    from lutfuse_deploy.rig.file import rig_from_dict

    return replace(data, rig=rig_from_dict(record, f"{info.path.name} (its rig)"))


def _rig_ir_hw(info: OnnxInfo) -> tuple[int, int] | None:
    """A rig graph's IR size: its calibration frames keep each camera's own size (the graph warps them)."""
    return info.rig_hw["ir"] if info.rig_hw is not None else None


def build_engine(req: BuildRequest) -> BuildResult:
    if req.remote is not None:
        from lutfuse_deploy.engines.remote import check_remote

        check_remote(req.remote)
    target = resolve_target(req.target)
    info = inspect_onnx(req.onnx)
    check_for_tensorrt(info)
    model = req.name or info.model_name
    check_name(model, "model name (set it with --name)")
    notes: list[str] = []
    shapes = _profile(req, target, notes, info.static_hw if info.rig_hw else None)
    check_shapes(info, shapes)
    precision = req.precision or target.default_precision
    workspace = _workspace(req, target, info, shapes, notes)
    compat = Compatibility(req.version_compatible, req.hardware_compat)
    if compat.hardware != "none" and target.integrated:
        raise EngineError(
            f"hardware-compatible engines are for discrete GPUs; {target.name} is a Jetson: drop --hardware-compat"
        )
    if compat.hardware != "none" and req.dla_core is not None:
        raise EngineError("a DLA engine cannot be hardware-compatible: drop --hardware-compat or --dla")
    if req.remote:  # the user asked for the device: do not build here even if this GPU matches
        version, gpu, why_not = None, None, f"building on {req.remote}"
    else:
        version, gpu, why_not = local_capability(target)
    if req.require_build and (version is None or gpu is None):  # before calibration or any writing
        raise NotBuildableHere(f"cannot build for {target.name} here: {why_not}")
    major = major_of(version) if version else target.tensorrt_major
    plan = plan_precision(
        precision,
        major,
        target,
        has_lookup=info.has_lookup,
        onnx_has_qdq=info.has_qdq,
        onnx_has_fp16=info.has_fp16,
        have_calibration=req.calib is not None,
        qdq=req.qdq,
        dla_core=req.dla_core,
        onnx_ops=info.ops,
    )
    calibrates = plan.calibrator or plan.insert_qdq
    if req.calib is not None and not calibrates:
        raise InputError(f"--calib: a {precision} build on TensorRT {major} is not calibrated here "
                         f"({'its ONNX carries Q/DQ scales already' if plan.qdq else 'no INT8'}); drop --calib")
    if req.ir16 != "refuse" and req.calib is None:
        raise InputError(f"--ir16 {req.ir16}: maps the IR of --calib images; this build reads none")
    data = _calibration(req, info, shapes.opt, calibrates)
    data, check, tolerance = int8_sets(
        plan.insert_qdq, data, req.check_data, req.int8_tolerance, vi_channels=info.vi_channels, hw=shapes.opt,
        ir16=req.ir16, ir_hw=_rig_ir_hw(info),
    )
    folder = bundle_dir(req.out_root, target.name, model, precision, req.dla_core)
    cache_dir = req.out_root / CALIBRATION_CACHE_DIR
    if version and major != target.tensorrt_major:
        notes.append(
            f"{target.name} expects TensorRT {target.tensorrt_major}; building with TensorRT {version}"
        )
    spec = BundleSpec(
        target, info, plan, shapes, workspace, model, req.dla_core, data, compatibility=compat,
        check_data=check, tolerance=tolerance, progress=req.progress or (lambda _msg: None),
    )
    if version is not None and gpu is not None:
        result = _build_here(spec, folder, version, gpu, cache_dir, req.force, notes)
        if result.action == "built" and plan.insert_qdq:  # the engine's own row in the INT8 table
            from lutfuse_deploy.engines.int8_report import check_bundle

            result.manifest, _report = check_bundle(folder)
        return result
    if data is not None and plan.calibrator:
        spec = replace(spec, calib_cache=calib.find_cache(cache_dir, info.sha256, data.digest, major))
    result = _write_bundle(spec, folder, req.force, why_not, notes)
    if req.remote and result.action != "reused":
        from lutfuse_deploy.engines.remote import remote_build

        manifest = remote_build(folder, req.remote, target.name)
        return BuildResult(
            "remote-built",
            folder,
            manifest,
            f"built on {req.remote}",
            folder / str(manifest["engine_file"]),
            notes=notes,
        )
    return result


def _profile(req: BuildRequest, target: Target, notes: list[str],
             rig_hw: tuple[int, int] | None = None) -> ShapeProfile:
    """``--shapes`` or the target's; a DLA runs one size only (min = opt = max), else every layer
    would silently fall back to the GPU, so DLA builds get a static profile. A rig graph has one size
    (the rig's), which is its profile unless --shapes says otherwise (and is then refused)."""
    if rig_hw is not None and not req.shapes:
        notes.append(f"rig graph: static profile {size_text(rig_hw)} (WxH, the visible camera's size)")
        return ShapeProfile(rig_hw, rig_hw, rig_hw)
    shapes = parse_shapes(req.shapes) if req.shapes else target.default_shapes
    if req.dla_core is None or shapes.is_static:
        return shapes
    if req.shapes:
        raise InputError(
            f"the DLA needs a static profile (MIN = OPT = MAX) and --shapes {req.shapes} is dynamic: "
            f"pass one size, e.g. --shapes {size_text(shapes.opt)} (WxH)"
        )
    notes.append(
        f"DLA: static profile {size_text(shapes.opt)} (WxH, {target.name}'s OPT); pass --shapes WxH for another size"
    )
    return ShapeProfile(shapes.opt, shapes.opt, shapes.opt)


# Workspace per byte of the largest layer's inputs + outputs at the maximum shape. Measured: TensorRT-RTX
# needed between 1.75 and 2 GiB to build the teacher at 1920x1088 (largest layer 1.49 GiB); the
# 0.5-1 GiB the Orin targets gave before made that build fail.
WORKSPACE_PER_LAYER_BYTE = 2


def derive_workspace(target: Target, info: OnnxInfo, shapes: ShapeProfile) -> tuple[float, float]:
    """(workspace GiB, what the model needs GiB): the target's workspace, raised to what the model's
    largest layer at the profile's maximum shape needs, rounded up to a quarter GiB."""
    need = largest_layer_bytes(info, shapes.max) * WORKSPACE_PER_LAYER_BYTE / (1 << 30)
    return max(target.workspace_gib, quarter_gib(need)), need


def quarter_gib(gib: float) -> float:
    """``gib`` rounded up to a quarter GiB (the workspace granularity builds use)."""
    return -(-gib * 4 // 1) / 4


def _workspace(
    req: BuildRequest, target: Target, info: OnnxInfo, shapes: ShapeProfile, notes: list[str]
) -> float:
    """``--workspace``, else ``derive_workspace``; a maximum shape whose workspace alone would not
    fit in the target's memory is refused (before anything is written)."""
    derived, need = derive_workspace(target, info, shapes)
    memory = target.smallest_memory_gib
    if memory is not None and need >= memory:
        raise InputError(
            f"--shapes max {size_text(shapes.max)} (WxH) is too large for {target.name}: building "
            f"{info.model_name} at that size needs about {need:.2f} GiB of workspace (twice its largest "
            f"layer) and the smallest {target.name} has {memory:.2f} GiB: lower the maximum"
        )
    if memory is not None and req.workspace_gib is None and derived >= memory:
        # the default or the quarter-GiB rounding would ask for the whole device (an explicit --workspace
        # that large is refused below): ask for what the model needs instead
        notes.append(f"workspace {need:.3g} GiB, what {info.model_name} needs at {size_text(shapes.max)}: "
                     f"{derived:g} GiB (the default or rounded up) is not below the smallest {target.name}'s "
                     f"{memory:.2f} GiB")
        return need
    if req.workspace_gib is not None:
        if req.workspace_gib <= 0:
            raise InputError(f"--workspace must be > 0 GiB, got {req.workspace_gib:g}")
        if memory is not None and req.workspace_gib >= memory:
            raise InputError(
                f"--workspace {req.workspace_gib:g} GiB is not below the smallest {target.name}'s memory ({memory:.1f} GiB)"
            )
        if req.workspace_gib < derived:
            notes.append(
                f"--workspace {req.workspace_gib:g} GiB is below the {derived:g} GiB derived for "
                f"{size_text(shapes.max)}: the build may fail or skip tactics"
            )
        return req.workspace_gib
    if derived > target.workspace_gib:
        notes.append(
            f"workspace {derived:g} GiB: {info.model_name} at {size_text(shapes.max)} (WxH) needs about "
            f"{need:.2f} GiB ({target.name}'s default is {target.workspace_gib:g} GiB)"
        )
    return derived


def _check_replace(old: dict[str, Any] | None, wanted: dict[str, Any], folder: Path, force: bool) -> None:
    """Never replace a bundle or engine made for other image sizes without --force."""
    if old is None or force or old.get("shapes") == wanted.get("shapes"):
        return
    raise InputError(
        f"{folder} holds a {old.get('status')} for shapes {shapes_text(old.get('shapes'))} (WxH); this build "
        f"asks for {shapes_text(wanted.get('shapes'))}: pass --force to replace it, or --name NEW to keep both"
    )


def shapes_text(shapes: Any) -> str:
    """A manifest's ``shapes`` as MIN:OPT:MAX in WxH."""
    try:
        return ":".join(f"{shapes[k]['width']}x{shapes[k]['height']}" for k in ("min", "opt", "max"))
    except (KeyError, TypeError):
        return "?"  # written by an older version, axes unnamed


def _existing(folder: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(folder / MANIFEST_NAME) if (folder / MANIFEST_NAME).is_file() else None
    except LutfuseError:
        return None


def _write_bundle(spec: BundleSpec, folder: Path, force: bool, why: str, notes: list[str]) -> BuildResult:
    from lutfuse_deploy.engines.bundle import bundle_manifest

    wanted = bundle_manifest(spec)
    old = _existing(folder)
    _check_replace(old, wanted, folder, force)
    command = f"bash {folder}/build.sh   (copy {folder} to the {spec.target.name} first, keeping that path)"
    if old is not None and not force:
        same, _ = reuse_decision(old, wanted, folder)
        if same:
            return BuildResult(
                "reused",
                folder,
                old,
                f"{why}; the bundle already holds this engine",
                folder / str(old["engine_file"]),
                command,
                notes,
            )
    with staging_dir(folder) as tmp:
        manifest = stage_bundle(spec, tmp)
    if spec.plan.autocast_fp16:
        notes.append(
            f"TensorRT 11 FP16: build.sh runs `{AUTOCAST_COMMAND}` (pip install 'lutfuse-deploy[autocast]') first"
        )
    return BuildResult("bundle", folder, manifest, why, None, command, notes)


def _build_here(
    spec: BundleSpec,
    folder: Path,
    version: str,
    gpu: LocalGpu,
    cache_dir: Path,
    force: bool,
    notes: list[str],
) -> BuildResult:
    from lutfuse_deploy.engines.bundle import bundle_manifest
    from lutfuse_deploy.engines.tensorrt import onnx_to_engine

    wanted = bundle_manifest(spec)
    wanted.update(compute_capability=gpu.compute_capability, tensorrt_version=version)
    old = _existing(folder)
    _check_replace(old, wanted, folder, force)
    if old is not None and not force:
        same, why = reuse_decision(old, wanted, folder)
        if same:
            return BuildResult("reused", folder, old, why, folder / str(old["engine_file"]), notes=notes)
    plan = spec.plan
    cache_file = None
    calibrator = None
    if plan.calibrator:
        assert spec.calib_data is not None  # plan_precision refuses int8 without calibration data
        cache_file = cache_dir / calib.cache_name(spec.info.sha256, spec.calib_data.digest, version)
        calibrator = calib.make_entropy_calibrator(spec.calib_data, spec.info.io, cache_file)
    with staging_dir(folder) as tmp:
        manifest = stage_bundle(spec, tmp)
        source = tmp / spec.onnx_name
        if plan.insert_qdq:
            source = tmp / spec.qdq_name  # written by stage_bundle
        elif plan.autocast_fp16:
            source = _autocast(spec, tmp)
        built = onnx_to_engine(
            source,
            tmp / spec.engine_name,
            plan=plan,
            shapes=spec.shapes,
            vi_channels=spec.info.vi_channels,
            workspace_gib=spec.workspace_gib,
            timing_cache=folder.parent / TIMING_CACHE,
            calibrator=calibrator,
            dla_core=spec.dla_core,
            compatibility=spec.compatibility,
            layer_report=tmp / spec.layers_name,
            input_hw=spec.info.rig_hw,
        )
        if cache_file is not None and cache_file.is_file():
            shutil.copyfile(cache_file, tmp / CALIB_CACHE)  # lets the bundle's trtexec line reuse the scales
        from lutfuse_deploy.io.files import sha256_file

        manifest.update(
            status="built",
            engine_file=spec.engine_name,
            engine_sha256=sha256_file(built.engine),
            tensorrt_version=version,
            tensorrt_major=major_of(version),
            gpu_name=gpu.name,
            compute_capability=gpu.compute_capability,
            build_seconds=round(built.build_seconds, 3),
            fp32_layers=built.fp32_layers,
            calibration_cache=CALIB_CACHE if cache_file is not None else None,
            layer_report=built.layer_report.name if built.layer_report else None,
        )
        short = workspace_shortfall(built.warnings)
        if short is not None:
            notes.append(
                f"some tactics wanted {short / 1024:.2f} GiB of workspace and were skipped (limit "
                f"{spec.workspace_gib:g} GiB): --workspace {short / 1024:.2f} may give a faster engine"
            )
        if built.layer_report is None:
            notes.append("no per-layer report: TensorRT could not load the engine it built here")
        write_manifest(tmp / MANIFEST_NAME, manifest)
    return BuildResult(
        "built",
        folder,
        manifest,
        f"built with TensorRT {version} on {gpu.name}",
        folder / spec.engine_name,
        notes=notes,
    )


def _autocast(spec: BundleSpec, folder: Path) -> Path:
    return autocast_fp16(folder / spec.onnx_name, folder / spec.fp16_name, spec.info, spec.plan.pin_fp32)


def autocast_fp16(src: Path, out: Path, info: OnnxInfo, pin_fp32: bool) -> Path:
    """TensorRT 11 FP16 through ModelOpt AutoCast (the documented route), keeping the lookup (and,
    with ``pin_fp32``, the guard nodes around it) in FP32; inputs and outputs stay float32."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError:
        raise EngineError(
            "TensorRT 11 has no FP16 flag: FP16 comes from ModelOpt AutoCast, which is not installed "
            f"(pip install 'lutfuse-deploy[autocast]'), or pass an ONNX already converted with `{AUTOCAST_COMMAND}`"
        ) from None
    import onnx

    model = convert_to_mixed_precision(
        onnx_path=str(src),
        low_precision_type="fp16",
        keep_io_types=True,
        op_types_to_exclude=["GridSample"] if info.has_lookup else None,
        nodes_to_exclude=exact_name_patterns(info.guard_nodes) if pin_fp32 else None,
    )
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out
