"""The TensorRT builder and runner: what can be checked without TensorRT, then real builds (marked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from engines_helpers import make_onnx

from lutfuse_deploy.engines import tensorrt as etrt
from lutfuse_deploy.engines.manifest import new_manifest, write_manifest
from lutfuse_deploy.errors import EngineError, InputError, MissingDependency
from lutfuse_deploy.runtime import create_runner

TRT_VERSION = etrt.tensorrt_version()


def test_engine_modules_import_no_heavy_library() -> None:
    code = (
        "import sys, lutfuse_deploy.engines.build, lutfuse_deploy.engines.bundle, lutfuse_deploy.engines.tensorrt, "
        "lutfuse_deploy.engines.calibration, lutfuse_deploy.engines.remote, lutfuse_deploy.runtime.tensorrt, "
        "lutfuse_deploy.cli.engine; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch', 'tensorrt', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(TRT_VERSION is not None, reason="TensorRT is installed here")
def test_stub_only_tensorrt_is_a_missing_dependency() -> None:
    with pytest.raises(MissingDependency, match=r"pip install 'lutfuse-deploy\[tensorrt\]'.*JetPack"):
        etrt.import_tensorrt()


def test_fast_precision_queries_only_before_tensorrt_10_5() -> None:
    """platform_has_fast_fp16/int8 are deprecated from TensorRT 10.5: never touched there."""
    from types import SimpleNamespace

    from lutfuse_deploy.engines.precision import plan_precision
    from lutfuse_deploy.engines.targets import load_target

    class Builder:
        def __init__(self, fast: bool) -> None:
            self.fast = fast
            self.asked = 0

        @property
        def platform_has_fast_fp16(self) -> bool:
            self.asked += 1
            return self.fast

    class Config:
        def __init__(self) -> None:
            self.flags: list[str] = []

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

        def clear_flag(self, flag: str) -> None:
            pass

    plan = plan_precision("fp16", 10, load_target("orin-nx"), has_lookup=False, onnx_has_qdq=False,
                          onnx_has_fp16=False, have_calibration=False)
    flags = SimpleNamespace(FP16="FP16", TF32="TF32")
    for version, fast, asked in (("10.13.0.35", False, 0), ("10.3.0.30", True, 1)):
        trt = SimpleNamespace(__version__=version, BuilderFlag=flags)
        builder, config = Builder(fast), Config()
        etrt._set_precision(trt, builder, config, plan)
        assert (builder.asked, config.flags) == (asked, ["FP16"])
    with pytest.raises(EngineError, match="no fast FP16"):
        etrt._set_precision(SimpleNamespace(__version__="10.3.0", BuilderFlag=flags), Builder(False), Config(), plan)


# -- the TensorRT graph adapters, on duck-typed stand-ins ------------------------------------------


class _T:
    def __init__(self, name: str) -> None:
        self.name = name


class _Layer:
    def __init__(self, name: str, kind: str, ins: list[str], outs: list[str]) -> None:
        self.name, self.type = name, f"LayerType.{kind}"
        self._ins, self._outs = [_T(i) for i in ins], [_T(o) for o in outs]
        self.num_inputs, self.num_outputs = len(ins), len(outs)

    def get_input(self, i: int) -> _T:
        return self._ins[i]

    def get_output(self, i: int) -> _T:
        return self._outs[i]


class _Net:
    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self.num_layers = len(layers)

    def get_layer(self, i: int) -> _Layer:
        return self.layers[i]


def test_network_nodes_map_layer_types_for_the_fp32_guard() -> None:
    from lutfuse_deploy.engines.precision import fp32_guard

    net = _Net(
        [
            _Layer("conv", "CONVOLUTION", ["x"], ["c"]),
            _Layer("sig", "ACTIVATION", ["c"], ["s"]),
            _Layer("luma", "REDUCE", ["vi"], ["y"]),
            _Layer("grid", "CONCATENATION", ["s", "y"], ["g"]),
            _Layer("table", "CONSTANT", [], ["t"]),
            _Layer("lookup", "GRID_SAMPLE", ["t", "g"], ["l"]),
            _Layer("rgb", "ELEMENTWISE", ["l", "vi"], ["fused"]),
        ]
    )
    nodes = etrt.network_nodes(net)  # type: ignore[arg-type]
    assert [n.op for n in nodes] == [
        "Conv",
        "ACTIVATION",
        "REDUCE",
        "CONCATENATION",
        "CONSTANT",
        "GridSample",
        "ELEMENTWISE",
    ]
    assert fp32_guard(nodes) == ["sig", "luma", "grid", "table", "lookup", "rgb"]
    # a rig's warp samples the image input itself: it and its grid stay FP32, the model after it does not
    warp = _Net(
        [
            _Layer("rows", "CONSTANT", [], ["r"]),
            _Layer("warp_grid", "ELEMENTWISE", ["r", "r"], ["wg"]),
            _Layer("warp", "GRID_SAMPLE", ["ir", "wg"], ["w"]),
            _Layer("conv", "CONVOLUTION", ["w", "vi"], ["c"]),
            _Layer("act", "ACTIVATION", ["c"], ["fused"]),
        ]
    )
    assert fp32_guard(etrt.network_nodes(warp)) == ["rows", "warp_grid", "warp"]  # type: ignore[arg-type]


def test_parser_errors_lists_every_error_with_its_node() -> None:
    class Err:
        def __init__(self, i: int) -> None:
            self.i = i

        def node(self) -> int:
            return self.i

        def node_name(self) -> str:
            return f"/lut/GridSample_{self.i}"

        def node_operator(self) -> str:
            return "GridSample"

        def desc(self) -> str:
            return f"problem {self.i}"

    class Parser:
        num_errors = 2

        def get_error(self, i: int) -> Err:
            return Err(i)

    assert etrt.parser_errors(Parser()) == [  # type: ignore[arg-type]
        "node /lut/GridSample_0 (GridSample): problem 0",
        "node /lut/GridSample_1 (GridSample): problem 1",
    ]


# -- the runner's checks before TensorRT ------------------------------------------------------------


def _engine_with_manifest(tmp_path: Path, **over: Any) -> Path:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    m = new_manifest(
        status="built",
        target="orin-nx",
        model="m",
        kind="mmdrfuse-student",
        io="uint8",
        onnx_file="m.onnx",
        onnx_sha256="0" * 64,
        precision="fp16",
        shapes={"min": [8, 8], "opt": [8, 8], "max": [8, 8]},
        flags=[],
        compute_capability="8.7",
        gpu_name="Orin",
        tensorrt_version="10.3.0",
        tensorrt_major=10,
        engine_file="m.engine",
        engine_sha256="0" * 64,
    )
    m.update(over)
    write_manifest(tmp_path / "manifest.json", m)
    return engine


def test_runner_reads_kind_and_io_from_the_manifest(tmp_path: Path) -> None:
    runner = create_runner(_engine_with_manifest(tmp_path), "tensorrt", device="cuda", threads=4)
    assert (runner.backend, runner.kind, runner.io) == ("tensorrt", "mmdrfuse-student", "uint8")
    assert runner.metadata["precision"] == "fp16" and runner.metadata["compute_capability"] == "8.7"
    assert runner.device == "cuda:0"


def test_runner_refusals_before_any_gpu_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such engine file"):
        create_runner(tmp_path / "none.engine", "tensorrt")
    engine = _engine_with_manifest(tmp_path)
    with pytest.raises(InputError, match="TensorRT engines run on a CUDA GPU only"):
        create_runner(engine, "tensorrt", device="cpu")
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(EngineError, match="no engine manifest"):
        create_runner(engine, "tensorrt")


@pytest.mark.skipif(TRT_VERSION is not None, reason="TensorRT is installed here")
def test_runner_activation_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    runner = create_runner(_engine_with_manifest(tmp_path), "tensorrt")
    with pytest.raises(MissingDependency, match="tensorrt"):
        runner.activate()


# -- real TensorRT ------------------------------------------------------------------------------------


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def real_tensorrt(fn: Any) -> Any:
    """Needs a real TensorRT and a CUDA GPU: skipped with the reason elsewhere."""
    for mark in (
        pytest.mark.skipif(TRT_VERSION is None, reason="TensorRT is not installed (only its type stubs)"),
        pytest.mark.skipif(not _cuda(), reason="no CUDA GPU visible to torch"),
        pytest.mark.tensorrt,
    ):
        fn = mark(fn)
    return fn


@pytest.fixture
def local_target(tmp_path: Path) -> Path:
    """A target YAML for whatever GPU this machine has, with the installed TensorRT major."""
    from lutfuse_deploy.engines.local_gpu import detect_gpu
    from lutfuse_deploy.engines.targets import targets_dir

    gpu = detect_gpu()
    assert gpu is not None and TRT_VERSION is not None
    data = yaml.safe_load((targets_dir() / "rtx-3090.yaml").read_text())
    data.update(
        name="local",
        compute_capability=gpu.compute_capability,
        tensorrt_major=etrt.major_of(TRT_VERSION),
        precisions=["fp32", "fp16"],
        default_precision="fp32",
        default_shapes="16x16:32x48:64x64",
        workspace_gib=0.5,
    )
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _ort(onnx: Path, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return np.asarray(ort.InferenceSession(str(onnx)).run(None, {"ir": ir, "vi": vi})[0])


def _pair(h: int, w: int, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return (
        (rng.random((1, 1, h, w)) * 255).astype(np.float32),
        (rng.random((1, c, h, w)) * 255).astype(np.float32),
    )


@real_tensorrt
def test_fp32_engine_matches_onnxruntime_and_is_reused(tmp_path: Path, local_target: Path) -> None:
    from lutfuse_deploy.engines.build import BuildRequest, build_engine

    onnx = make_onnx(tmp_path / "lut.onnx")
    req = BuildRequest(onnx=onnx, target=str(local_target), precision="fp32", out_root=tmp_path / "e")
    res = build_engine(req)
    assert res.action == "built" and res.engine is not None and res.engine.is_file()
    assert (tmp_path / "e" / "local" / "timing.cache").is_file()
    assert res.manifest["layer_report"] == "lut.layers.json"  # the engine inspector's per-layer JSON
    assert json.loads((res.folder / "lut.layers.json").read_text())
    assert build_engine(req).action == "reused"
    ir, vi = _pair(40, 56)
    with create_runner(res.engine, "tensorrt", device="cuda") as runner:
        got = runner.infer(ir, vi)
        with pytest.raises(InputError, match="outside this engine's profile"):
            runner.infer(*_pair(100, 100))
    assert np.abs(got - _ort(onnx, ir, vi)).max() < 1e-4


@real_tensorrt
def test_fp16_engine_keeps_the_lookup_in_fp32(tmp_path: Path, local_target: Path) -> None:
    from lutfuse_deploy.engines.build import BuildRequest, build_engine

    if TRT_VERSION is not None and etrt.major_of(TRT_VERSION) >= 11:
        pytest.skip("TensorRT 11 FP16 needs ModelOpt AutoCast")
    onnx = make_onnx(tmp_path / "lut.onnx")
    res = build_engine(
        BuildRequest(onnx=onnx, target=str(local_target), precision="fp16", out_root=tmp_path / "e")
    )
    manifest = json.loads((res.folder / "manifest.json").read_text())
    assert any("GridSample" in name for name in manifest["fp32_layers"])
    ir, vi = _pair(32, 48)
    with create_runner(res.folder / "lut.engine", "tensorrt", device="cuda") as runner:
        got = runner.infer(ir, vi)
    assert np.abs(got - _ort(onnx, ir, vi)).max() < 2e-2


@real_tensorrt
def test_runner_refuses_an_engine_from_another_gpu(tmp_path: Path, local_target: Path) -> None:
    from lutfuse_deploy.engines.build import BuildRequest, build_engine

    onnx = make_onnx(tmp_path / "lut.onnx")
    res = build_engine(
        BuildRequest(onnx=onnx, target=str(local_target), precision="fp32", out_root=tmp_path / "e")
    )
    m = json.loads((res.folder / "manifest.json").read_text())
    m["compute_capability"] = "5.3"
    (res.folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match=r"built for .* \(sm 5.3\)"):
        create_runner(res.folder / "lut.engine", "tensorrt", device="cuda").activate()
