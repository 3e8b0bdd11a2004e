"""Bundles without a GPU: contents, manifest, trtexec lines for TensorRT 10 and 11, and build.sh itself."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from engines_helpers import FAKE_TRTEXEC, make_onnx

from lutfuse_deploy.engines import build as eb
from lutfuse_deploy.engines.build import BuildRequest, build_engine
from lutfuse_deploy.engines.manifest import read_manifest
from lutfuse_deploy.errors import EngineError, InputError


@pytest.fixture(autouse=True)
def no_local_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this machine has, these tests exercise the bundle path."""
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "TensorRT is not installed here"))


@pytest.fixture
def lut(tmp_path: Path) -> Path:
    return make_onnx(tmp_path / "lut.onnx")


def _bundle(onnx: Path, out: Path, **kw: object) -> eb.BuildResult:
    return build_engine(BuildRequest(onnx=onnx, out_root=out, **kw))  # type: ignore[arg-type]


def test_orin_nx_fp16_bundle_holds_onnx_manifest_and_build_sh(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path / "engines", target="orin-nx", precision="fp16")
    folder = tmp_path / "engines" / "orin-nx" / "lut-fp16"
    assert res.action == "bundle" and res.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == ["build.sh", "lut.json", "lut.onnx", "manifest.json"]
    assert (folder / "lut.onnx").read_bytes() == lut.read_bytes()
    assert os.access(folder / "build.sh", os.X_OK)
    m = read_manifest(folder / "manifest.json")
    assert m["onnx_sha256"] == hashlib.sha256(lut.read_bytes()).hexdigest()
    assert m["compute_capability"] == "8.7"
    assert (m["status"], m["target"], m["kind"], m["io"], m["precision"], m["tensorrt_major"]) == (
        "bundle",
        "orin-nx",
        "lutfuse",
        "float",
        "fp16",
        10,
    )
    assert m["shapes"] == {
        "min": {"width": 128, "height": 128},
        "opt": {"width": 640, "height": 480},
        "max": {"width": 1280, "height": 1024},
    }
    assert "FP16" in m["flags"] and "OBEY_PRECISION_CONSTRAINTS" in m["flags"]
    assert m["engine_sha256"] is None and m["tensorrt_version"] is None and m["build_time"]
    assert "/lut/GridSample" in m["fp32_nodes"] and "/ctx/Conv" not in m["fp32_nodes"]
    assert not list(folder.parent.glob(".lut-fp16.*")), "no staging leftovers"


def _trtexec_line(folder: Path) -> list[str]:
    script = (folder / "build.sh").read_text()
    line = next(ln for ln in script.splitlines() if ln.strip().startswith('"$TRTEXEC"'))
    return shlex.split(line.split("2>&1")[0])[1:]


def _toolkit_line(folder: Path) -> list[str]:
    script = (folder / "build.sh").read_text()
    line = next(ln for ln in script.splitlines() if "-m lutfuse_deploy build-engine" in ln)
    return shlex.split(line)[3:]


def test_trtexec_line_trt10_fp16_pins_the_lookup_layers_to_fp32(lut: Path, tmp_path: Path) -> None:
    res = _bundle(
        lut, tmp_path, target="orin-nx", precision="fp16", shapes="320x240:640x480:1920x1080", workspace_gib=2
    )
    args = _trtexec_line(res.folder)
    assert args[0] == "--onnx=lut.onnx"
    assert "--minShapes=ir:1x1x240x320,vi:1x3x240x320" in args
    assert "--optShapes=ir:1x1x480x640,vi:1x3x480x640" in args
    assert "--maxShapes=ir:1x1x1080x1920,vi:1x3x1080x1920" in args
    assert "--fp16" in args and "--stronglyTyped" not in args
    assert "--precisionConstraints=obey" in args
    layer_prec = next(a for a in args if a.startswith("--layerPrecisions="))
    assert "/lut/GridSample:fp32" in layer_prec and "/ctx/Conv" not in layer_prec
    assert "--timingCacheFile=../timing.cache" in args
    assert "--memPoolSize=workspace:2048" in args
    assert "--saveEngine=lut.engine" in args
    # the per-layer report shows the FP32 pins took effect
    assert {"--profilingVerbosity=detailed", "--dumpLayerInfo", "--exportLayerInfo=lut.layers.json"} <= set(args)
    script = (res.folder / "build.sh").read_text()
    bench = shlex.split(next(ln for ln in script.splitlines() if "--loadEngine=" in ln).removeprefix("echo "))
    bench = bench[0].split()
    assert bench[0] == "$TRTEXEC"  # the trtexec build.sh found
    assert bench[1:4] == ["--loadEngine=lut.engine", "--shapes=ir:1x1x480x640,vi:1x3x480x640", "--useCudaGraph"]
    assert "--separateProfileRun" in bench


def test_compatibility_options_reach_manifest_toolkit_and_trtexec(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path, target="rtx-3090", precision="fp16", version_compatible=True, hardware_compat="ampere+")
    m = read_manifest(res.folder / "manifest.json")
    assert (m["version_compatible"], m["hardware_compatibility"]) == (True, "ampere+")
    assert {"--versionCompatible", "--hardwareCompatibilityLevel=ampere+"} <= set(_trtexec_line(res.folder))
    tk = _toolkit_line(res.folder)
    assert "--version-compatible" in tk and tk[tk.index("--hardware-compat") + 1] == "ampere+"
    with pytest.raises(EngineError, match="hardware-compatible engines are for discrete GPUs"):
        _bundle(lut, tmp_path / "j", target="orin-nx", precision="fp16", hardware_compat="ampere+")


def test_toolkit_line_rebuilds_the_same_thing_on_the_device(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path, target="orin-nx", precision="fp16", shapes="640x480", workspace_gib=0.5)
    args = _toolkit_line(res.folder)
    assert args[0] == "build-engine"
    pairs = dict(zip(args[1::2], args[2::2]))
    assert pairs["--onnx"] == "lut.onnx" and pairs["--name"] == "lut" and pairs["--target"] == "orin-nx"
    assert pairs["--precision"] == "fp16" and pairs["--shapes"] == "640x480:640x480:640x480"
    assert pairs["--workspace"] == "0.5" and pairs["-o"] == "../.."
    assert "--require-build" in args


def test_trtexec_line_trt10_fp32_turns_tf32_off(lut: Path, tmp_path: Path) -> None:
    args = _trtexec_line(_bundle(lut, tmp_path, target="rtx-3090", precision="fp32").folder)
    assert "--noTF32" in args
    assert not any(a in args for a in ("--fp16", "--int8", "--best", "--precisionConstraints=obey"))


def test_trt11_fp16_is_strongly_typed_after_autocast(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path, target="h100", precision="fp16")
    args = _trtexec_line(res.folder)
    assert "--stronglyTyped" in args and "--onnx=lut.fp16.onnx" in args
    assert not any(a in args for a in ("--fp16", "--int8", "--best")) and not any(
        "layerPrecisions" in a for a in args
    )
    script = (res.folder / "build.sh").read_text()
    autocast = next(ln for ln in script.splitlines() if "modelopt.onnx.autocast" in ln)
    assert "--keep_io_types" in autocast and "--op_types_to_exclude GridSample" in autocast
    assert "'^/lut/GridSample$'" in autocast  # --nodes_to_exclude keeps the lookup chain in FP32, anchored
    m = read_manifest(res.folder / "manifest.json")
    assert m["tensorrt_major"] == 11 and "AUTOCAST_FP16" in m["flags"] and "FP16" not in m["flags"]
    assert any("modelopt" in n for n in res.notes)


def test_int8_bundle_carries_calibration_data_at_opt_size(lut: Path, tmp_path: Path) -> None:
    ir = tmp_path / "cal" / "ir"
    vi = tmp_path / "cal" / "vi"
    _write_pairs(ir, vi, 3, (40, 50))
    res = _bundle(
        lut,
        tmp_path / "e",
        target="orin-nx",
        precision="int8",
        calib=str(tmp_path / "cal"),
        shapes="16x16:32x24:64x64",
    )
    import numpy as np

    with np.load(res.folder / "calib.npz") as z:
        assert (
            z["ir"].shape == (3, 1, 24, 32) and z["vi"].shape == (3, 3, 24, 32) and z["ir"].dtype == np.uint8
        )
    args = _trtexec_line(res.folder)
    assert "--int8" in args and "--calib=calib.cache" in args
    assert "--calib" in _toolkit_line(res.folder) and "calib.npz" in _toolkit_line(res.folder)
    m = read_manifest(res.folder / "manifest.json")
    assert m["calibration_digest"] and "INT8_CALIBRATOR" in m["flags"]
    script = (res.folder / "build.sh").read_text()
    assert "run BUILD_WITH=toolkit ./build.sh once to calibrate" in script  # no cache shipped yet

    # once a cache for this ONNX, these pixels and TensorRT 10.x exists, the next bundle ships it
    from lutfuse_deploy.engines.calibration import cache_name

    cache = (
        tmp_path / "e" / ".calibration" / cache_name(m["onnx_sha256"], m["calibration_digest"], "10.3.0.30")
    )
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"scales")
    again = _bundle(
        lut,
        tmp_path / "e",
        target="orin-nx",
        precision="int8",
        calib=str(tmp_path / "cal"),
        shapes="16x16:32x24:64x64",
    )
    assert (again.folder / "calib.cache").read_bytes() == b"scales"
    assert read_manifest(again.folder / "manifest.json")["calibration_cache"] == "calib.cache"
    assert "once to calibrate" not in (again.folder / "build.sh").read_text()


def test_trt11_int8_with_qdq_writes_a_qdq_model_here(lut: Path, tmp_path: Path) -> None:
    import onnx

    _write_pairs(tmp_path / "cal" / "ir", tmp_path / "cal" / "vi", 2, (20, 20))
    res = _bundle(
        lut,
        tmp_path / "e",
        target="h100",
        precision="int8",
        qdq=True,
        calib=str(tmp_path / "cal"),
        shapes="16x16",
    )
    qdq = onnx.load(str(res.folder / "lut.qdq.onnx"))
    ops = [n.op_type for n in qdq.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "GridSample" in ops
    args = _trtexec_line(res.folder)
    assert "--onnx=lut.qdq.onnx" in args and "--stronglyTyped" in args and "--int8" not in args
    assert "--qdq" in _toolkit_line(res.folder)


def test_dla_bundle_for_a_model_without_lookup(tmp_path: Path) -> None:
    student = make_onnx(tmp_path / "student.onnx", kind="mmdrfuse-student")
    res = _bundle(student, tmp_path / "e", target="orin-nx", precision="fp16", dla_core=1)
    assert res.folder.name == "student-fp16-dla1"
    args = _trtexec_line(res.folder)
    assert "--useDLACore=1" in args and "--allowGPUFallback" in args
    # a DLA runs one size: without --shapes the target's OPT (640x480 WxH) becomes a static profile
    assert "--minShapes=ir:1x1x480x640,vi:1x1x480x640" in args
    assert "--maxShapes=ir:1x1x480x640,vi:1x1x480x640" in args
    assert any("DLA: static profile 640x480" in n for n in res.notes)
    with pytest.raises(InputError, match="the DLA needs a static profile"):
        _bundle(student, tmp_path / "e2", target="orin-nx", precision="fp16", dla_core=1, shapes="128x128:640x480:640x480")


def test_static_export_bundle_uses_its_own_size(tmp_path: Path) -> None:
    static = make_onnx(tmp_path / "s.onnx", static_hw=(480, 640))
    res = _bundle(static, tmp_path / "e", target="orin-nx", precision="fp32", shapes="640x480")
    assert read_manifest(res.folder / "manifest.json")["shapes"]["max"] == {"width": 640, "height": 480}


def test_uint8_io_is_recorded(tmp_path: Path) -> None:
    u8 = make_onnx(tmp_path / "u8.onnx", io="uint8")
    res = _bundle(u8, tmp_path / "e", target="orin-nx", precision="fp16")
    m = read_manifest(res.folder / "manifest.json")
    assert m["io"] == "uint8"
    assert not any("Cast" in n for n in m["fp32_nodes"])  # a Cast's output type is its own


def test_rebundling_replaces_the_folder_atomically(lut: Path, tmp_path: Path) -> None:
    first = _bundle(lut, tmp_path, target="orin-nx", precision="fp16")
    (first.folder / "stale.txt").write_text("x")
    again = _bundle(lut, tmp_path, target="orin-nx", precision="fp16", workspace_gib=2)
    assert again.folder == first.folder and not (again.folder / "stale.txt").exists()
    assert read_manifest(again.folder / "manifest.json")["workspace_gib"] == 2


def test_a_bundle_for_other_shapes_is_replaced_only_with_force(lut: Path, tmp_path: Path) -> None:
    first = _bundle(lut, tmp_path, target="orin-nx", precision="fp16")
    before = (first.folder / "manifest.json").read_bytes()
    with pytest.raises(InputError, match=r"holds a bundle for shapes 128x128:640x480:1280x1024 \(WxH\)"):
        _bundle(lut, tmp_path, target="orin-nx", precision="fp16", shapes="640x480")
    assert (first.folder / "manifest.json").read_bytes() == before
    forced = _bundle(lut, tmp_path, target="orin-nx", precision="fp16", shapes="640x480", force=True)
    assert read_manifest(forced.folder / "manifest.json")["shapes"]["min"] == {"width": 640, "height": 480}


# -- build.sh, run for real with a fake trtexec ------------------------------------------------------


def fake_tools(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "trtexec"
    exe.write_text(FAKE_TRTEXEC)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


def test_build_sh_is_valid_bash(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path, target="orin-nx", precision="fp16")
    assert subprocess.run(["bash", "-n", str(res.folder / "build.sh")], check=False).returncode == 0


def test_build_sh_trtexec_branch_builds_and_fills_the_manifest(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path / "engines", target="orin-nx", precision="fp16")
    bin_dir = fake_tools(tmp_path / "bin")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BUILD_WITH": "trtexec",
        "FAKE_LOG": str(tmp_path / "log"),
    }
    proc = subprocess.run(
        ["bash", str(res.folder / "build.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    m = read_manifest(res.folder / "manifest.json")
    engine = res.folder / "lut.engine"
    assert m["status"] == "built" and m["engine_file"] == "lut.engine"
    assert m["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert (m["tensorrt_version"], m["compute_capability"], m["gpu_name"]) == ("10.3.0", "8.7", "Orin")
    assert "--fp16" in (tmp_path / "log").read_text()

    # the next build-engine call sees the identical built engine and reuses it
    again = _bundle(lut, tmp_path / "engines", target="orin-nx", precision="fp16")
    assert again.action == "reused" and again.engine == engine
    # a different workspace is not the identical engine: a new bundle replaces it
    assert _bundle(lut, tmp_path / "engines", target="orin-nx", precision="fp16", workspace_gib=2).action == "bundle"


def test_build_sh_reports_a_failed_trtexec(lut: Path, tmp_path: Path) -> None:
    res = _bundle(lut, tmp_path, target="orin-nx", precision="fp16")
    env = {
        **os.environ,
        "PATH": f"{fake_tools(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}",
        "BUILD_WITH": "trtexec",
        "FAKE_TRTEXEC_RC": "3",
    }
    proc = subprocess.run(
        ["bash", str(res.folder / "build.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 3
    assert json.loads((res.folder / "manifest.json").read_text())["status"] == "bundle"


def _write_pairs(ir: Path, vi: Path, n: int, hw: tuple[int, int]) -> None:
    import numpy as np
    from PIL import Image

    ir.mkdir(parents=True)
    vi.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, hw, dtype=np.uint8)).save(ir / f"{i:03d}.png")
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(vi / f"{i:03d}.png")
