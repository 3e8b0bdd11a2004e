"""Build bundles: everything a device needs to build its own engine, in one folder.

``engines/<target>/<model>-<precision>/`` holds the ONNX (and its sidecar), the calibration data or
cache for INT8, ``manifest.json`` and a self-contained ``build.sh``. The script runs the toolkit's
own ``build-engine`` where the toolkit and TensorRT import, else an equivalent ``trtexec`` line
(TensorRT 10: precision flags and per-layer FP32 constraints; TensorRT 11: strongly typed, with the
ModelOpt AutoCast step for FP16 or the Q/DQ model written here for INT8). Engines for Jetson must be
built on the device itself: there is no cross-building for sm_87 on x86 (docs/semantics.md §7).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lutfuse_deploy import __version__
from lutfuse_deploy.engines.calibration import CalibrationSet, save_npz
from lutfuse_deploy.engines.int8_check import CHECK_NPZ, Tolerance
from lutfuse_deploy.engines.int8_report import BUILD_SH_CHECK, record_build
from lutfuse_deploy.engines.manifest import MANIFEST_NAME, new_manifest, write_manifest
from lutfuse_deploy.engines.onnx_info import OnnxInfo
from lutfuse_deploy.engines.precision import AUTOCAST_COMMAND, PrecisionPlan, exact_name_patterns
from lutfuse_deploy.engines.targets import Compatibility, ShapeProfile, Target, size_text
from lutfuse_deploy.errors import InputError
from lutfuse_deploy.io.files import write_text_atomic

CALIB_NPZ = "calib.npz"
CALIB_CACHE = "calib.cache"
TIMING_CACHE = "timing.cache"  # one per target folder, shared by every build for that target
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class BundleSpec:
    target: Target
    info: OnnxInfo
    plan: PrecisionPlan
    shapes: ShapeProfile
    workspace_gib: float
    model: str
    dla_core: int | None = None
    calib_data: CalibrationSet | None = None
    calib_cache: Path | None = None  # an existing cache to ship with the bundle
    compatibility: Compatibility = Compatibility()
    check_data: CalibrationSet | None = None  # INT8 Q/DQ: pairs the quantised graph is measured on
    tolerance: Tolerance = Tolerance()
    progress: Callable[[str], None] = field(default=lambda _msg: None, compare=False)

    @property
    def onnx_name(self) -> str:
        return f"{self.model}.onnx"

    @property
    def engine_name(self) -> str:
        return f"{self.model}.engine"

    @property
    def qdq_name(self) -> str:
        return f"{self.model}.qdq.onnx"

    @property
    def fp16_name(self) -> str:
        return f"{self.model}.fp16.onnx"

    @property
    def layers_name(self) -> str:
        """The per-layer report: engine inspector JSON (toolkit) or trtexec --exportLayerInfo."""
        return f"{self.model}.layers.json"


def check_name(name: str, what: str) -> str:
    """Names become folder names and remote paths: keep them to a safe alphabet."""
    if not _SAFE.match(name) or name.startswith("."):
        raise InputError(f"{what} {name!r} may only use letters, digits, '.', '_' and '-'")
    return name


def bundle_dir(out_root: Path, target: str, model: str, precision: str, dla_core: int | None = None) -> Path:
    leaf = f"{model}-{precision}" + (f"-dla{dla_core}" if dla_core is not None else "")
    return out_root / check_name(target, "target name") / check_name(leaf, "bundle name")


def _shape_arg(spec: BundleSpec, hw: tuple[int, int]) -> str:
    return ",".join(f"{n}:{'x'.join(map(str, spec.info.input_shape(n, hw)))}" for n in ("ir", "vi"))


def toolkit_command(spec: BundleSpec) -> list[str]:
    """The toolkit's own build, run from inside the bundle folder (output goes back into it)."""
    cmd = [
        "build-engine",
        "--onnx",
        spec.onnx_name,
        "--name",
        spec.model,
        "--target",
        spec.target.name,
        "--precision",
        spec.plan.precision,
        "--shapes",
        str(spec.shapes),
        "--workspace",
        f"{spec.workspace_gib:g}",
        "-o",
        "../..",
        "--require-build",
    ]
    if spec.plan.calibrator or spec.plan.insert_qdq:
        cmd += ["--calib", CALIB_NPZ]
    if spec.plan.insert_qdq:
        cmd += ["--qdq", "--check-data", CHECK_NPZ, "--int8-tolerance", str(spec.tolerance)]
    if spec.dla_core is not None:
        cmd += ["--dla", str(spec.dla_core)]
    if spec.compatibility.version_compatible:
        cmd += ["--version-compatible"]
    if spec.compatibility.hardware != "none":
        cmd += ["--hardware-compat", spec.compatibility.hardware]
    return cmd


def autocast_command(spec: BundleSpec) -> list[str] | None:
    """TensorRT 11 FP16: ModelOpt AutoCast with the lookup and colour nodes kept in FP32."""
    if not spec.plan.autocast_fp16:
        return None
    cmd = AUTOCAST_COMMAND.split() + [
        "--onnx_path",
        spec.onnx_name,
        "--output_path",
        spec.fp16_name,
        "--low_precision_type",
        "fp16",
        "--keep_io_types",
    ]
    if spec.info.has_lookup:
        cmd += ["--op_types_to_exclude", "GridSample"]
    if spec.plan.pin_fp32 and spec.info.guard_nodes:
        cmd += ["--nodes_to_exclude", *exact_name_patterns(spec.info.guard_nodes)]
    return cmd


def trtexec_onnx(spec: BundleSpec) -> str:
    if spec.plan.autocast_fp16:
        return spec.fp16_name
    return spec.qdq_name if spec.plan.insert_qdq else spec.onnx_name


def trtexec_command(spec: BundleSpec, trtexec: str = "trtexec") -> list[str]:
    """An equivalent trtexec line for the target's TensorRT major."""
    p = spec.plan
    cmd = [
        trtexec,
        f"--onnx={trtexec_onnx(spec)}",
        f"--minShapes={_shape_arg(spec, spec.shapes.min)}",
        f"--optShapes={_shape_arg(spec, spec.shapes.opt)}",
        f"--maxShapes={_shape_arg(spec, spec.shapes.max)}",
    ]
    if p.strongly_typed:
        cmd.append("--stronglyTyped")  # always on in TensorRT 11; harmless to state
    else:
        cmd += {"fp16": ["--fp16"], "int8": ["--int8"], "best": ["--best"]}.get(p.precision, [])
        if p.calibrator:
            cmd.append(f"--calib={CALIB_CACHE}")
        if p.pin_fp32 and spec.info.guard_nodes:
            names = spec.info.guard_nodes
            cmd += [
                "--precisionConstraints=obey",
                "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in names),
                "--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in names),
            ]
    if p.no_tf32:
        cmd.append("--noTF32")
    if spec.dla_core is not None:
        cmd += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    if spec.compatibility.version_compatible:
        cmd.append("--versionCompatible")
    if spec.compatibility.hardware != "none":
        cmd.append(f"--hardwareCompatibilityLevel={_TRTEXEC_HARDWARE[spec.compatibility.hardware]}")
    mib = max(1, round(spec.workspace_gib * 1024))
    cmd += [
        f"--timingCacheFile=../{TIMING_CACHE}",
        f"--memPoolSize=workspace:{mib}",
        f"--saveEngine={spec.engine_name}",
        # the per-layer report (precision, tactic, DLA or GPU per layer): the FP32 pins and DLA placement
        "--profilingVerbosity=detailed",
        "--dumpLayerInfo",
        f"--exportLayerInfo={spec.layers_name}",
    ]
    return cmd


_TRTEXEC_HARDWARE = {"ampere+": "ampere+", "same-cc": "sameComputeCapability"}


def benchmark_command(spec: BundleSpec, trtexec: str = "trtexec") -> list[str]:
    """A reproducible trtexec timing of the built engine at the profile's OPT size: CUDA graphs, and
    a separate profiling run so per-layer timing does not disturb the end-to-end numbers."""
    cmd = [
        trtexec,
        f"--loadEngine={spec.engine_name}",
        f"--shapes={_shape_arg(spec, spec.shapes.opt)}",
        "--useCudaGraph",
        "--separateProfileRun",
        "--noDataTransfers",
    ]
    if spec.dla_core is not None:
        cmd.append(f"--useDLACore={spec.dla_core}")
    return cmd


def bundle_manifest(spec: BundleSpec) -> dict[str, Any]:
    t = spec.target
    return new_manifest(
        status="bundle",
        target=t.name,
        model=spec.model,
        kind=spec.info.kind,
        io=spec.info.io,
        onnx_file=spec.onnx_name,
        onnx_sha256=spec.info.sha256,
        opset=spec.info.opset,
        precision=spec.plan.precision,
        shapes=spec.shapes.to_dict(),
        flags=spec.plan.flags,
        workspace_gib=spec.workspace_gib,
        dla_core=spec.dla_core,
        calibration_digest=spec.calib_data.digest if spec.calib_data is not None else None,
        calibration_cache=CALIB_CACHE if spec.calib_cache is not None else None,
        check_digest=spec.check_data.digest if spec.check_data is not None else None,
        int8_tolerance=str(spec.tolerance) if spec.plan.insert_qdq else None,
        compute_capability=t.compute_capability,
        gpu_name=t.description or t.name,
        tensorrt_major=spec.plan.tensorrt_major,
        version_compatible=spec.compatibility.version_compatible,
        hardware_compatibility=spec.compatibility.hardware,
        fp32_nodes=list(spec.info.guard_nodes) if spec.plan.pin_fp32 else [],
        layer_report=None,
        rig=graph_rig_record(spec.info.sidecar) if spec.info.rig_hw else None,
    )


def graph_rig_record(sidecar: dict[str, Any] | None) -> dict[str, Any] | None:
    """The rig a rig graph carries (the rig file's fields), for the manifest: the engine runner needs the
    two cameras' sizes and the output box."""
    rig = (sidecar or {}).get("rig")
    if not isinstance(rig, dict):
        return None
    return {k: rig[k] for k in ("format", "ir_size", "vi_size", "homography", "output", "made") if k in rig}


# Filled in by build.sh after a trtexec build: stdlib only, the device may not have the toolkit.
_MANIFEST_UPDATE = r"""
import hashlib, json, os, re, sys
log = open("trtexec.log", errors="replace").read()
m = json.load(open("manifest.json"))
def grab(pattern):
    found = re.search(pattern, log)
    return found.group(1).strip() if found else None
version = grab(r"TensorRT version:\s*([0-9.]+)")
if version is None:
    try:
        import tensorrt
        version = tensorrt.__version__
    except Exception:
        sys.exit("build.sh: cannot tell the TensorRT version (not in trtexec.log, tensorrt not importable)")
engine = m["model"] + ".engine"
layers = m["model"] + ".layers.json"
m.update(status="built", engine_file=engine, tensorrt_version=version,
         layer_report=layers if os.path.isfile(layers) else None,
         engine_sha256=hashlib.sha256(open(engine, "rb").read()).hexdigest(),
         compute_capability=grab(r"Compute Capability:\s*([0-9]+\.[0-9]+)") or m["compute_capability"],
         gpu_name=grab(r"Selected Device:\s*(.+)") or m["gpu_name"], built_by="trtexec via build.sh")
json.dump(m, open("manifest.json.tmp", "w"), indent=2)
os.replace("manifest.json.tmp", "manifest.json")
print("engine:", os.path.abspath(engine))
"""


def render_build_sh(spec: BundleSpec) -> str:
    t, p = spec.target, spec.plan
    toolkit = "${PYTHON:-python3} -m lutfuse_deploy " + shlex.join(toolkit_command(spec))
    trtexec = '"$TRTEXEC" ' + shlex.join(trtexec_command(spec)[1:])
    bench = shlex.join(benchmark_command(spec)[1:])
    autocast = autocast_command(spec)
    needs_cache = p.calibrator and spec.calib_cache is None
    lines = [
        "#!/usr/bin/env bash",
        f"# Build {spec.engine_name} for {t.name}: sm {t.compute_capability}, TensorRT {t.tensorrt_major}.x,",
        f"# {p.precision}, shapes {spec.shapes} (MIN:OPT:MAX, each WIDTHxHEIGHT). {t.description}",
        f"# Written by lutfuse-deploy {__version__}. Run it ON THE DEVICE: engines only load on the GPU",
        "# architecture and TensorRT version that built them.",
        "#   ./build.sh                     toolkit if it imports with TensorRT, else trtexec",
        "#   BUILD_WITH=trtexec ./build.sh  force trtexec (TRTEXEC=/path/to/trtexec to choose one)",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'BUILD_WITH="${BUILD_WITH:-auto}"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        "",
        "build_toolkit() {",
        f"  {toolkit}",
        "}",
        "",
        "build_trtexec() {",
    ]
    if needs_cache:
        lines += [
            f"  if [ ! -f {CALIB_CACHE} ]; then",
            f'    echo "trtexec needs {CALIB_CACHE}: run BUILD_WITH=toolkit ./build.sh once to calibrate" >&2',
            "    exit 2",
            "  fi",
        ]
    if autocast is not None:
        lines += [f"  ${{PYTHON:-python3}} {shlex.join(autocast[1:])}"]
    if p.pin_fp32 and p.tensorrt_major < 11:
        lines += ["  # layer names follow the ONNX node names (the parser names layers after nodes)"]
    lines += [
        f"  {trtexec} 2>&1 | tee trtexec.log",
        "  ${PYTHON:-python3} - <<'PY'" + _MANIFEST_UPDATE + "PY",
        *(BUILD_SH_CHECK if spec.plan.insert_qdq else []),  # the toolkit's build-engine checks its own
        "}",
        "",
        'if [ "$BUILD_WITH" = auto ]; then',
        '  if ${PYTHON:-python3} -c "import lutfuse_deploy, tensorrt; tensorrt.Builder" >/dev/null 2>&1; then',
        "    BUILD_WITH=toolkit",
        '  elif [ -x "$TRTEXEC" ]; then',
        "    BUILD_WITH=trtexec",
        "  else",
        '    echo "build.sh: neither lutfuse-deploy with TensorRT nor trtexec found on this machine" >&2',
        "    exit 2",
        "  fi",
        "fi",
        'case "$BUILD_WITH" in',
        "  toolkit) build_toolkit ;;",
        "  trtexec) build_trtexec ;;",
        '  *) echo "build.sh: BUILD_WITH must be auto, toolkit or trtexec" >&2; exit 2 ;;',
        "esac",
        f'echo "per-layer report (precision, tactic, DLA/GPU of every layer): $PWD/{spec.layers_name}"',
        f'echo "benchmark ({size_text(spec.shapes.opt)} WxH, CUDA graph, profiling in a separate run):"',
        f'echo "  $TRTEXEC {bench}"',  # names are from a safe alphabet: nothing to quote
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that replaces it only if the block succeeds."""
    from lutfuse_deploy.io.files import staged_dir

    with staged_dir(final) as tmp:
        yield tmp
        _publish_modes(tmp)


def _publish_modes(folder: Path) -> None:
    """mkdtemp/mkstemp make private 0700/0600 entries; a bundle is meant to be copied and shared."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.iterdir():
        p.chmod((0o777 if p.suffix == ".sh" else 0o666) & ~umask)


def stage_bundle(spec: BundleSpec, folder: Path) -> dict[str, Any]:
    """Write the bundle files into ``folder``; returns the manifest (written too)."""
    shutil.copyfile(spec.info.path, folder / spec.onnx_name)
    if spec.info.sidecar_path is not None:
        shutil.copyfile(spec.info.sidecar_path, folder / f"{spec.model}.json")
    if spec.calib_data is not None and (spec.plan.calibrator or spec.plan.insert_qdq):
        save_npz(spec.calib_data, folder / CALIB_NPZ)
    if spec.calib_cache is not None:
        shutil.copyfile(spec.calib_cache, folder / CALIB_CACHE)
    manifest = bundle_manifest(spec)
    if spec.plan.insert_qdq:
        _stage_int8(spec, folder, manifest)
    script = folder / "build.sh"
    write_text_atomic(script, render_build_sh(spec))
    script.chmod(0o755)
    write_manifest(folder / MANIFEST_NAME, manifest)
    return manifest


def _stage_int8(spec: BundleSpec, folder: Path, manifest: dict[str, Any]) -> None:
    """The Q/DQ graph within the tolerance (sensitive layers in float), measured; the check pairs
    travel with the bundle so the device can measure its engine on the same ones."""
    from lutfuse_deploy.engines.int8_search import quantise_within

    # plan_precision refuses --qdq without calibration data; build_engine always sets check pairs
    assert spec.calib_data is not None and spec.check_data is not None
    result = quantise_within(
        folder / spec.onnx_name,
        folder / spec.qdq_name,
        spec.calib_data,
        spec.check_data,
        io=spec.info.io,
        kind=spec.info.kind,
        guard=spec.info.guard_nodes if spec.plan.pin_fp32 else (),
        tolerance=spec.tolerance,
        progress=spec.progress,
    )
    save_npz(spec.check_data, folder / CHECK_NPZ)
    record_build(folder, manifest, result.to_dict())
