"""Where an INT8 measurement goes: the manifest's ``int8_check``, the bundle's README and, on the
device, the built engine's own row (``check_bundle``, run by ``build.sh`` as ``check-int8``).

The manifest is the record; the README is rendered from it, so the device's row lands beside the
rows measured at build time without either side parsing the other's text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lutfuse_deploy.engines.int8_check import (
    CHECK_NPZ,
    LSB_OFF,
    CheckReport,
    Tolerance,
    compare_models,
    table,
)
from lutfuse_deploy.engines.manifest import MANIFEST_NAME, read_manifest, write_manifest
from lutfuse_deploy.errors import EngineError, InputError
from lutfuse_deploy.io.files import write_text_atomic

README = "README.md"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# build.sh's trtexec route for an INT8 Q/DQ bundle, once the engine is built: the engine against the
# float32 ONNX on the bundled check pairs, the device's row in the table measured at build time (the
# toolkit route's build-engine runs the same check itself); needs the toolkit and onnxruntime
BUILD_SH_CHECK = [
    '  if ${PYTHON:-python3} -c "import lutfuse_deploy, onnxruntime, tensorrt; tensorrt.Runtime" >/dev/null 2>&1; then',
    "    ${PYTHON:-python3} -m lutfuse_deploy check-int8 .",
    "  else",
    '    echo "build.sh: the engine was not compared with the float32 ONNX: install lutfuse-deploy with'
    ' onnxruntime and TensorRT, then run: python3 -m lutfuse_deploy check-int8 $PWD" >&2',
    "  fi",
]


def rows(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The table rows of a manifest's ``int8_check``: build time first, then each later check."""
    n = record["quantisable_layers"]
    shipped = "" if record["float_layers"] else ", shipped"
    out = [(f"Q/DQ, all {n} layers INT8 (ONNX Runtime{shipped})", record["all_int8"])]
    if record["float_layers"]:
        k = len(record["float_layers"])
        out.append((f"Q/DQ, {k} of {n} layers float (ONNX Runtime, shipped)", record["shipped"]))
    for name, report in record.get("checks", {}).items():
        out.append((f"{name} ({report.get('backend', '?')})", report))
    return out


def summary(record: dict[str, Any]) -> str:
    """The table and what the search kept in float, as printed by build-engine and check-int8."""
    first = record["shipped"]
    lines = [
        f"INT8 against float32 on {first['pairs']} check pairs ({first['size']} WxH, {first['source']}), "
        f"8-bit LSB; tolerance {record['tolerance']}:",
        table(rows(record)),
    ]
    if record["float_layers"]:
        lines.append(
            f"kept in float by the sensitive-layer search: {', '.join(record['float_layers'])} "
            f"({len(record['float_layers'])} of {record['quantisable_layers']} layers, "
            f"{100 * record['macs_float_share']:.1f}% of their multiply-accumulates)"
        )
    if record["float_layers"] and record["int8_layers"] == 0:
        lines.append("no layer is left in INT8: this is a float engine; --precision fp16 builds a faster one")
    return "\n".join(lines)


def render_readme(manifest: dict[str, Any]) -> str:
    record = manifest["int8_check"]
    model = manifest["model"]
    return "\n".join(
        [
            f"# {model}: INT8 for {manifest['target']}",
            "",
            f"`{model}.qdq.onnx` is `{model}.onnx` with INT8 Q/DQ nodes from ONNX Runtime's quantiser. Both "
            f"were run in ONNX Runtime on check pairs never used for calibration (`{CHECK_NPZ}`), and their "
            f"8-bit outputs compared: mean, 99th percentile and largest difference in 8-bit steps (LSB), "
            f"the share of values more than {LSB_OFF} LSB off, and each fusion metric as INT8 minus float32, "
            "averaged over the pairs.",
            "",
            summary(record),
            "",
            "Once the engine is built (`build.sh` on the device, or `build-engine` where the GPU is), it is "
            "compared with the float32 ONNX on the same pairs (`lutfuse-deploy check-int8 .`) and its row "
            "added here and to `manifest.json`.",
            "",
        ]
    )


def record_build(folder: Path, manifest: dict[str, Any], record: dict[str, Any]) -> None:
    """Put the build-time measurement in the manifest (in place) and write the README from it."""
    manifest["int8_check"] = record
    write_text_atomic(folder / README, render_readme(manifest))


def check_bundle(folder: Path, int8_file: str | None = None) -> tuple[dict[str, Any], CheckReport]:
    """Compare the bundle's engine (or ``int8_file``, e.g. its Q/DQ graph) with its float32 ONNX on
    the bundled check pairs, record the row in manifest and README, and refuse a result beyond the
    tolerance the build was held to (after recording it)."""
    from lutfuse_deploy.engines import calibration as calib

    manifest = read_manifest(folder / MANIFEST_NAME)
    record = manifest.get("int8_check")
    if not isinstance(record, dict):
        raise InputError(f"{folder}: not an INT8 bundle measured at build time (build-engine --precision int8 --qdq)")
    if int8_file is None:
        if manifest.get("status") != "built" or not manifest.get("engine_file"):
            raise EngineError(f"{folder}: no engine built yet: run its build.sh, or pass --int8 FILE")
        int8_file = str(manifest["engine_file"])
    path = folder / int8_file
    if not path.is_file():
        raise InputError(f"{path}: not found")
    backend = "tensorrt" if path.suffix.lower() in ENGINE_SUFFIXES else "onnxruntime"
    vi_channels = 3 if manifest["kind"] == "lutfuse" else 1
    npz = folder / CHECK_NPZ
    if not npz.is_file():
        raise InputError(f"{folder}: {CHECK_NPZ} (the check pairs) is missing")
    vi_hw, ir_hw = _npz_hw(npz)
    data = calib.load_calibration(npz, vi_channels=vi_channels, hw=vi_hw, ir_hw=ir_hw)
    if manifest.get("rig"):  # a rig bundle's check pairs are raw frames: scored through the rig's warp
        from dataclasses import replace

        from lutfuse_deploy.rig.file import rig_from_dict

        data = replace(data, rig=rig_from_dict(manifest["rig"], f"{folder.name} (its manifest's rig)"))
    report = compare_models(folder / str(manifest["onnx_file"]), path, data, str(manifest["kind"]), backend)
    entry = {**report.to_dict(), "source": record["shipped"]["source"], "backend": backend}
    if backend == "tensorrt":
        entry.update(tensorrt_version=manifest.get("tensorrt_version"), gpu_name=manifest.get("gpu_name"))
    record.setdefault("checks", {})[path.name] = entry
    write_manifest(folder / MANIFEST_NAME, manifest)
    write_text_atomic(folder / README, render_readme(manifest))
    tolerance = Tolerance.parse(record["tolerance"])
    if not tolerance.holds(report.stats):
        raise EngineError(
            f"{path.name} is beyond the INT8 tolerance {record['tolerance']} on the check pairs: "
            f"{report.stats.text()} (recorded in {folder / README})"
        )
    return manifest, report


def _npz_hw(npz: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """(visible, IR) image sizes (H, W) the check pairs were stored at: a rig bundle keeps each camera's."""
    import numpy as np

    try:
        with np.load(npz) as z:
            shapes = z["vi"].shape, z["ir"].shape
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{npz.name}: not a check npz with arrays ir and vi ({exc})") from None
    if any(len(shape) != 4 for shape in shapes):
        raise InputError(f"{npz.name}: ir and vi must be N x C x H x W")
    (vi_h, vi_w), (ir_h, ir_w) = (shape[2:] for shape in shapes)
    return (int(vi_h), int(vi_w)), (int(ir_h), int(ir_w))
