"""Manifests: the runtime check, the engine-file check, reuse decisions, and the build-here path
(with the TensorRT builder replaced by a fake, so the orchestration is tested without a GPU)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from engines_helpers import make_onnx

from lutfuse_deploy.engines import build as eb
from lutfuse_deploy.engines import manifest as mf
from lutfuse_deploy.engines import tensorrt as etrt
from lutfuse_deploy.engines.local_gpu import LocalGpu
from lutfuse_deploy.errors import EngineError


def _built(tmp_path: Path, **over: Any) -> dict[str, Any]:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan-bytes")
    m = mf.new_manifest(
        status="built",
        target="orin-nx",
        model="m",
        kind="lutfuse",
        io="float",
        onnx_file="m.onnx",
        onnx_sha256="a" * 64,
        precision="fp16",
        shapes={"min": [1, 1], "opt": [2, 2], "max": [3, 3]},
        flags=["FP16"],
        workspace_gib=1.0,
        compute_capability="8.7",
        gpu_name="Orin",
        tensorrt_version="10.3.0.30",
        tensorrt_major=10,
        engine_file="m.engine",
        engine_sha256=hashlib.sha256(b"plan-bytes").hexdigest(),
    )
    m.update(over)
    mf.write_manifest(tmp_path / mf.MANIFEST_NAME, m)
    return m


def test_manifest_round_trip_and_lookup_beside_the_engine(tmp_path: Path) -> None:
    m = _built(tmp_path)
    assert mf.read_manifest(mf.manifest_for_engine(tmp_path / "m.engine")) == m
    side = tmp_path / "m.manifest.json"
    side.write_text((tmp_path / mf.MANIFEST_NAME).read_text())
    assert mf.manifest_for_engine(tmp_path / "m.engine") == side


def test_read_manifest_refuses_foreign_or_incomplete_json(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text('{"format": "other"}')
    (tmp_path / "c.json").write_text(f'{{"format": "{mf.FORMAT}"}}')
    for name, msg in (
        ("a.json", "not valid JSON"),
        ("b.json", "not a lutfuse-deploy engine manifest"),
        ("c.json", "manifest lacks"),
        ("missing.json", "no engine manifest"),
    ):
        with pytest.raises(EngineError, match=msg):
            mf.read_manifest(tmp_path / name)


def test_check_runtime_accepts_same_gpu_arch_and_tensorrt(tmp_path: Path) -> None:
    m = _built(tmp_path)
    mf.check_runtime(m, compute_capability="8.7", gpu_name="Orin", tensorrt_version="10.3.0")


@pytest.mark.parametrize(
    ("cc", "trt", "needle"),
    [
        ("8.9", "10.3.0", "built for Orin (sm 8.7) with TensorRT 10.3.0.30 and runs on sm 8.7 only; this machine has RTX (sm 8.9)"),
        ("8.7", "10.13.0.35", "loads with TensorRT 10.3.0.30 only (plans do not load across versions; --version-compatible"),
        ("8.7", "11.0.0", "rebuild it here"),
    ],
)
def test_check_runtime_refuses_a_mismatch_in_one_sentence(
    tmp_path: Path, cc: str, trt: str, needle: str
) -> None:
    with pytest.raises(EngineError) as err:
        mf.check_runtime(_built(tmp_path), compute_capability=cc, gpu_name="RTX", tensorrt_version=trt)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("compat", "cc", "trt", "loads"),
    [
        ({"version_compatible": True}, "8.7", "10.13.0.35", True),  # later version, same major
        ({"version_compatible": True}, "8.7", "11.4.0", True),  # later major (TensorRT 10 -> 11)
        ({"version_compatible": True}, "8.7", "10.2.0", False),  # never an older TensorRT
        ({"version_compatible": True}, "8.9", "10.3.0", False),  # versions only, not GPUs
        ({"hardware_compatibility": "ampere+"}, "8.9", "10.3.0.30", True),
        ({"hardware_compatibility": "ampere+"}, "7.5", "10.3.0.30", False),  # Turing is before Ampere
        ({"hardware_compatibility": "ampere+"}, "8.9", "10.13.0", False),  # GPUs only, not versions
        ({"hardware_compatibility": "same-cc"}, "8.7", "10.3.0.30", True),
        ({"hardware_compatibility": "same-cc"}, "8.6", "10.3.0.30", False),
    ],
)
def test_check_runtime_honours_version_and_hardware_compatibility(
    tmp_path: Path, compat: dict[str, object], cc: str, trt: str, loads: bool
) -> None:
    m = {**_built(tmp_path), **compat}
    if loads:
        mf.check_runtime(m, compute_capability=cc, gpu_name="GPU", tensorrt_version=trt)
    else:
        with pytest.raises(EngineError, match="rebuild it here"):
            mf.check_runtime(m, compute_capability=cc, gpu_name="GPU", tensorrt_version=trt)


def test_check_runtime_refuses_an_unbuilt_bundle(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="unbuilt bundle for orin-nx: run its build.sh on the device"):
        mf.check_runtime(
            _built(tmp_path, status="bundle"), compute_capability="8.7", gpu_name="x", tensorrt_version="10.3"
        )


def test_check_engine_file_catches_a_swapped_engine(tmp_path: Path) -> None:
    m = _built(tmp_path)
    mf.check_engine_file(m, tmp_path / "m.engine")
    (tmp_path / "m.engine").write_bytes(b"other")
    with pytest.raises(EngineError, match="does not match its manifest"):
        mf.check_engine_file(m, tmp_path / "m.engine")


def test_reuse_decisions(tmp_path: Path) -> None:
    old = _built(tmp_path)
    same = dict(old, status="bundle", engine_file=None, tensorrt_version="10.3.0.30", build_time="later")
    assert mf.reuse_decision(old, same, tmp_path) == (
        True,
        f"identical engine already built ({old['build_time']})",
    )
    assert mf.reuse_decision(None, same, tmp_path)[0] is False
    assert mf.reuse_decision(dict(old, status="bundle"), same, tmp_path) == (
        False,
        "previous output is an unbuilt bundle",
    )
    ok, why = mf.reuse_decision(old, dict(same, onnx_sha256="b" * 64), tmp_path)
    assert not ok and why.startswith("onnx_sha256 changed")
    ok, why = mf.reuse_decision(old, dict(same, precision="int8"), tmp_path)
    assert not ok and why.startswith("precision changed")
    ok, why = mf.reuse_decision(old, dict(same, tensorrt_version="10.4.0"), tmp_path)
    assert not ok and why.startswith("TensorRT changed")
    assert mf.reuse_decision(old, dict(same, tensorrt_version=None), tmp_path)[
        0
    ]  # a bundle does not know it yet
    (tmp_path / "m.engine").write_bytes(b"tampered")
    assert mf.reuse_decision(old, same, tmp_path) == (False, "engine file does not match its manifest")
    (tmp_path / "m.engine").unlink()
    assert mf.reuse_decision(old, same, tmp_path) == (False, "engine file is missing")


# -- build here, with a fake builder ----------------------------------------------------------------


class FakeBuilder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, onnx_path: Path, engine_path: Path, **kw: Any) -> etrt.EngineBuild:
        self.calls.append({"onnx": onnx_path, **kw})
        engine_path.write_bytes(b"engine from " + onnx_path.name.encode())
        return etrt.EngineBuild(engine_path, "10.3.0.30", 1.5, ["/lut/GridSample"])


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch) -> FakeBuilder:
    gpu = LocalGpu("Orin", "8.7", "torch", "NVIDIA Jetson Orin NX")
    monkeypatch.setattr(eb, "local_capability", lambda target: ("10.3.0.30", gpu, ""))
    fake = FakeBuilder()
    monkeypatch.setattr(etrt, "onnx_to_engine", fake)
    return fake


def test_build_here_writes_engine_and_a_complete_manifest(tmp_path: Path, here: FakeBuilder) -> None:
    onnx = make_onnx(tmp_path / "lut.onnx")
    res = eb.build_engine(
        eb.BuildRequest(onnx=onnx, target="orin-nx", precision="fp16", out_root=tmp_path / "e")
    )
    assert res.action == "built" and res.engine == tmp_path / "e" / "orin-nx" / "lut-fp16" / "lut.engine"
    m = mf.read_manifest(res.folder / mf.MANIFEST_NAME)
    assert (
        m["status"] == "built" and m["engine_sha256"] == hashlib.sha256(res.engine.read_bytes()).hexdigest()
    )
    assert (m["tensorrt_version"], m["gpu_name"], m["compute_capability"]) == ("10.3.0.30", "Orin", "8.7")
    assert m["onnx_sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest() and m["build_seconds"] == 1.5
    call = here.calls[0]
    assert call["plan"].builder_flags == ("FP16", "OBEY_PRECISION_CONSTRAINTS") and call["plan"].pin_fp32
    assert call["timing_cache"] == tmp_path / "e" / "orin-nx" / "timing.cache"
    assert call["calibrator"] is None and call["workspace_gib"] == 1.0
    assert (call["shapes"].min, call["shapes"].max) == ((128, 128), (1024, 1280))


def test_identical_engine_is_reused_not_rebuilt(tmp_path: Path, here: FakeBuilder) -> None:
    onnx = make_onnx(tmp_path / "lut.onnx")
    req = eb.BuildRequest(onnx=onnx, target="orin-nx", precision="fp16", out_root=tmp_path / "e")
    eb.build_engine(req)
    again = eb.build_engine(req)
    assert again.action == "reused" and len(here.calls) == 1
    forced = eb.build_engine(
        eb.BuildRequest(onnx=onnx, target="orin-nx", precision="fp16", out_root=tmp_path / "e", force=True)
    )
    assert forced.action == "built" and len(here.calls) == 2
    changed = eb.build_engine(
        eb.BuildRequest(
            onnx=onnx, target="orin-nx", precision="fp16", out_root=tmp_path / "e", workspace_gib=2.0
        )
    )
    assert changed.action == "built" and len(here.calls) == 3


def test_int8_here_uses_a_calibrator_with_a_keyed_cache(
    tmp_path: Path, here: FakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lutfuse_deploy.engines import calibration

    made: list[Path] = []

    def fake_calibrator(data: calibration.CalibrationSet, io: str, cache_file: Path) -> str:
        made.append(cache_file)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(b"scales")  # what TensorRT's write_calibration_cache would do
        return "calibrator"

    monkeypatch.setattr(calibration, "make_entropy_calibrator", fake_calibrator)
    npz = tmp_path / "calib.npz"
    import numpy as np

    calibration.save_npz(
        calibration.CalibrationSet(np.zeros((2, 1, 8, 8), np.uint8), np.zeros((2, 3, 8, 8), np.uint8), "t"),
        npz,
    )
    onnx = make_onnx(tmp_path / "lut.onnx")
    res = eb.build_engine(
        eb.BuildRequest(
            onnx=onnx,
            target="orin-nx",
            precision="int8",
            calib=str(npz),
            shapes="8x8",
            out_root=tmp_path / "e",
        )
    )
    assert here.calls[0]["calibrator"] == "calibrator"
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert made[0].parent == tmp_path / "e" / ".calibration"
    assert made[0].name.startswith(f"calib-{sha[:16]}-") and made[0].name.endswith("-trt10.3.0.30.cache")
    assert (res.folder / "calib.cache").read_bytes() == b"scales"
    assert mf.read_manifest(res.folder / mf.MANIFEST_NAME)["calibration_cache"] == "calib.cache"


def test_require_build_fails_instead_of_bundling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "no NVIDIA GPU found here"))
    onnx = make_onnx(tmp_path / "lut.onnx")
    with pytest.raises(EngineError, match="cannot build for orin-nx here: no NVIDIA GPU found here"):
        eb.build_engine(
            eb.BuildRequest(onnx=onnx, target="orin-nx", out_root=tmp_path / "e", require_build=True)
        )
    assert not (tmp_path / "e").exists()


def test_local_capability_needs_the_targets_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    from lutfuse_deploy.engines.targets import load_target

    monkeypatch.setattr(eb, "tensorrt_version", lambda: "10.13.0.35")
    monkeypatch.setattr(eb, "detect_gpu", lambda: LocalGpu("NVIDIA H100 80GB HBM3", "9.0", "nvidia-smi"))
    version, _gpu, why = eb.local_capability(load_target("orin-nx"))
    assert version is None and "is not a orin-nx (sm 8.7)" in why
    assert eb.local_capability(load_target("h100"))[0] == "10.13.0.35"
    monkeypatch.setattr(eb, "tensorrt_version", lambda: None)
    assert eb.local_capability(load_target("h100")) == (None, None, "TensorRT is not installed here")


def test_device_side_toolkit_build_in_place(
    tmp_path: Path, here: FakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What build.sh's toolkit line does on the device: build from inside the bundle, into the bundle."""
    from engines_helpers import make_onnx as _make

    lut = _make(tmp_path / "lut.onnx")
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "no GPU on the workstation"))
    bundle = eb.build_engine(
        eb.BuildRequest(onnx=lut, target="orin-nx", precision="fp16", out_root=tmp_path / "e")
    )
    gpu = LocalGpu("Orin", "8.7", "torch")
    monkeypatch.setattr(eb, "local_capability", lambda target: ("10.3.0.30", gpu, ""))
    monkeypatch.chdir(bundle.folder)
    res = eb.build_engine(
        eb.BuildRequest(
            onnx=Path("lut.onnx"),
            name="lut",
            target="orin-nx",
            precision="fp16",
            out_root=Path("../.."),
            require_build=True,
        )
    )
    assert res.action == "built"
    assert here.calls[0]["timing_cache"] == Path("../../orin-nx/timing.cache")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "e" / "orin-nx" / "lut-fp16"
    assert sorted(p.name for p in folder.iterdir()) == [
        "build.sh",
        "lut.engine",
        "lut.json",
        "lut.onnx",
        "manifest.json",
    ]
    m = mf.read_manifest(folder / mf.MANIFEST_NAME)
    assert m["status"] == "built" and m["onnx_sha256"] == hashlib.sha256(lut.read_bytes()).hexdigest()
    assert not list(folder.parent.glob(".lut-fp16*")), "no staging or old folders left behind"
