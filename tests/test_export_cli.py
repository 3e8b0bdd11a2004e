"""``export`` and ``check-onnx`` on small graphs: verdicts and exit codes (a good graph passes,
crafted bad ones fail), option refusals with one line, nothing written on failure, MMDRFuse graphs
and the runner's size rules. No shared data needed: LUTFUSE_DATA points at an empty folder, so the
export's parity check uses its synthetic inputs only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_one_line_error
from onnx import TensorProto, helper, numpy_helper

from lutfuse_deploy.errors import ExportError, InputError
from lutfuse_deploy.io.checkpoints import save_checkpoint
from lutfuse_deploy.models import create_model
from lutfuse_deploy.models.lut import analytic_lutfuse
from lutfuse_deploy.runtime import create_runner


@pytest.fixture(scope="module")
def no_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ, "LUTFUSE_DATA": str(tmp_path_factory.mktemp("empty_data"))}


def cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lutfuse_deploy", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    out = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = {"lutfuse": save_checkpoint(analytic_lutfuse(seed=1), out / "lut.safetensors")}
    for kind in ("mmdrfuse-student", "mmdrfuse-teacher"):
        paths[kind] = save_checkpoint(create_model(kind).eval(), out / f"{kind}.safetensors")
    return paths


@pytest.fixture(scope="module")
def good_onnx(checkpoints: dict[str, Path], no_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "lut.onnx"
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", path, "--height", "32", "--width", "48",
               "--numerics", "portable")
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def reference_onnx(checkpoints: dict[str, Path], no_data: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "lut.onnx"
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", path, "--dynamic")  # the default numerics
    assert proc.returncode == 0, proc.stderr
    assert "numerics reference" in proc.stdout
    return path


def _graph(nodes: list, opset: int, inits: list | None = None, hw: tuple[int, int] = (4, 4)) -> onnx.ModelProto:
    h, w = hw
    graph = helper.make_graph(
        nodes, "crafted",
        [helper.make_tensor_value_info("ir", TensorProto.FLOAT, [1, 1, h, w]),
         helper.make_tensor_value_info("vi", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("fused", TensorProto.FLOAT, [1, 3, h, w])], inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _gridsample_graph(opset: int, rank: int) -> onnx.ModelProto:
    grid_shape = [1, 4, 4, 2] if rank == 4 else [1, 1, 4, 4, 3]
    nodes = []
    src = "ir"
    if rank == 5:
        nodes.append(helper.make_node("Unsqueeze", ["ir", "ax"], ["ir5"]))
        src = "ir5"
    mode = "bilinear" if opset < 20 else "linear"
    nodes.append(helper.make_node("GridSample", [src, "grid"], ["s"], mode=mode, padding_mode="border", align_corners=1))
    if rank == 5:
        nodes.append(helper.make_node("Squeeze", ["s", "ax"], ["s4"]))
    nodes.append(helper.make_node("Add", ["vi", "s4" if rank == 5 else "s"], ["fused"]))
    inits = [numpy_helper.from_array(np.zeros(grid_shape, np.float32), "grid"),
             numpy_helper.from_array(np.array([2], np.int64), "ax")]
    return _graph(nodes, opset, inits)


def _verdict(env: dict[str, str], path: Path, target: str = "tensorrt") -> tuple[int, dict]:
    proc = cli(env, "check-onnx", path, "--for", target, "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _failed(doc: dict) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in doc["checks"] if c["status"] == "fail"}


def test_good_graph_passes_for_both_targets(good_onnx: Path, no_data: dict[str, str]) -> None:
    for target in ("tensorrt", "onnxruntime"):
        code, doc = _verdict(no_data, good_onnx, target)
        assert code == 0 and doc["verdict"] == "PASS" and not _failed(doc), doc
    proc = cli(no_data, "check-onnx", good_onnx)
    assert proc.returncode == 0 and "PASS" in proc.stdout and "gridsample" in proc.stdout


def test_unsupported_operator_fails(tmp_path: Path, no_data: dict[str, str]) -> None:
    nodes = [helper.make_node("Add", ["ir", "vi"], ["fused"]), helper.make_node("Unique", ["fused"], ["u"])]
    code, doc = _verdict(no_data, _save(_graph(nodes, 17), tmp_path / "unique.onnx"))
    assert code == 1 and doc["verdict"] == "FAIL"
    assert "Unique" in _failed(doc)["tensorrt operators"]


def test_rank5_gridsample_fails(tmp_path: Path, no_data: dict[str, str]) -> None:
    code, doc = _verdict(no_data, _save(_gridsample_graph(20, rank=5), tmp_path / "gs5.onnx"))
    assert code == 1
    assert "rank 5" in _failed(doc)["gridsample"]


def test_opset20_gridsample_fails_for_tensorrt_only(tmp_path: Path, no_data: dict[str, str]) -> None:
    path = _save(_gridsample_graph(20, rank=4), tmp_path / "gs20.onnx")
    code, doc = _verdict(no_data, path)
    assert code == 1 and "opset 20" in _failed(doc)["gridsample"]
    code, doc = _verdict(no_data, path, "onnxruntime")
    assert code == 0, doc
    ok = _save(_gridsample_graph(17, rank=4), tmp_path / "gs17.onnx")
    assert _verdict(no_data, ok)[0] == 0


def test_check_onnx_refuses_a_non_onnx_file(tmp_path: Path, no_data: dict[str, str]) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a protobuf")
    assert_one_line_error(cli(no_data, "check-onnx", junk), "not a readable ONNX model")
    assert_one_line_error(cli(no_data, "check-onnx", tmp_path / "missing.onnx"), "no such file")


def test_opset20_refused_for_gridsample_unless_overridden(checkpoints: dict[str, Path], no_data: dict[str, str],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "o20.onnx"
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", out, "--opset", "20",
               "--height", "24", "--width", "32")
    assert_one_line_error(proc, "refusing opset 20")
    assert proc.returncode == 1 and not out.exists() and not list(tmp_path.iterdir())
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", out, "--opset", "20",
               "--height", "24", "--width", "32", "--allow-opset-20")
    assert proc.returncode == 0, proc.stderr
    assert _verdict(no_data, out)[0] == 1  # fine for ONNX Runtime, not for TensorRT
    assert _verdict(no_data, out, "onnxruntime")[0] == 0


@pytest.mark.parametrize("opset", [16, 19])
def test_gridsample_export_at_opsets_16_and_19(opset: int, checkpoints: dict[str, Path], no_data: dict[str, str],
                                               tmp_path: Path) -> None:
    out = tmp_path / f"o{opset}.onnx"
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", out, "--opset", str(opset),
               "--height", "24", "--width", "32", "--no-simplify")
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(str(out))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == opset
    assert sum(n.op_type == "GridSample" for n in model.graph.node) == 4
    assert json.loads(out.with_suffix(".json").read_text())["simplified"] is False


def test_bad_model_gives_one_line(tmp_path: Path, no_data: dict[str, str]) -> None:
    out = tmp_path / "x.onnx"
    assert_one_line_error(cli(no_data, "export", "--model", tmp_path / "nope.safetensors", "-o", out), "not found")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    proc = cli(no_data, "export", "--model", junk, "-o", out)
    assert_one_line_error(proc, "junk.safetensors")
    assert proc.returncode == 1 and not out.exists()


def test_bad_options_give_one_line(checkpoints: dict[str, Path], no_data: dict[str, str], tmp_path: Path) -> None:
    from lutfuse_deploy.export.onnx import torch_to_onnx

    ckpt = checkpoints["lutfuse"]
    assert_one_line_error(cli(no_data, "export", "--model", ckpt, "-o", tmp_path / "x.onnx", "--height", "32"),
                          "both --height and --width")
    with pytest.raises(ExportError, match="must end in .onnx"):
        torch_to_onnx(ckpt, tmp_path / "x.txt")
    with pytest.raises(ExportError, match="opset 15"):
        torch_to_onnx(ckpt, tmp_path / "x.onnx", opset=15)
    with pytest.raises(ExportError, match="exclude each other"):
        torch_to_onnx(ckpt, tmp_path / "x.onnx", height=32, width=32, dynamic=True)
    assert not list(tmp_path.iterdir())


def test_failed_parity_writes_nothing(checkpoints: dict[str, Path], no_data: dict[str, str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from lutfuse_deploy.export import parity
    from lutfuse_deploy.export.onnx import torch_to_onnx

    monkeypatch.setenv("LUTFUSE_DATA", no_data["LUTFUSE_DATA"])
    monkeypatch.setattr(parity, "FLOAT_ATOL", -1.0)  # impossible bound: every input fails
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError, match="parity check failed"):
        torch_to_onnx(checkpoints["lutfuse"], out, height=16, width=24, lowering="gather")
    assert not list(tmp_path.iterdir())  # no .onnx, no sidecar, no temporary file


@pytest.mark.parametrize("float32_error,widen,passes", [(5e-4, True, True), (0.0, True, False), (5e-4, False, False)])
def test_parity_bound_widens_only_by_pytorchs_own_error(float32_error: float, widen: bool, passes: bool,
                                                        good_onnx: Path, checkpoints: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5e-4 mismatch passes only for the portable graph (widen) and only where PyTorch float32 is
    itself 5e-4 from its float64 result; the reference graph's bound is a flat 1e-4."""
    from lutfuse_deploy.export import parity
    from lutfuse_deploy.io.checkpoints import load_model

    model, _ = load_model(checkpoints["lutfuse"])
    real = parity._torch_path

    def shifted(m: object, item: parity.ParityInput, double: bool = False) -> np.ndarray:
        return real(m, item) + (5e-4 - float32_error if double else 5e-4)

    monkeypatch.setattr(parity, "_torch_path", shifted)
    inputs = parity.synthetic_inputs(3, (32, 48), 1)[1:]
    if not passes:
        with pytest.raises(ExportError, match="PyTorch float32 vs float64" if widen else "> 0.0001$"):
            parity.verify_parity(good_onnx, model, "float", inputs, widen=widen)
        return
    report = parity.verify_parity(good_onnx, model, "float", inputs, widen=widen)
    for row in report["inputs"]:
        assert row["passed"] and row["torch_float32_error"] == pytest.approx(5e-4, rel=1e-2)
        assert row["max_abs"] > 1e-4 and row["bound"] == pytest.approx(1e-4 + 1e-3, rel=1e-2)


@pytest.mark.parametrize("name", ["gridsample", "gather"])
def test_17_node_lattice_and_fast_variant_export(name: str, no_data: dict[str, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from lutfuse_deploy.export.onnx import torch_to_onnx
    from lutfuse_deploy.models.lut import LutFuseConfig

    monkeypatch.setenv("LUTFUSE_DATA", no_data["LUTFUSE_DATA"])
    ckpt = save_checkpoint(analytic_lutfuse(LutFuseConfig(nodes=17, context_scale=0.5), seed=2),
                           tmp_path / "n17.safetensors")
    path = torch_to_onnx(ckpt, tmp_path / "n17.onnx", lowering=name, dynamic=True)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["config"]["nodes"] == 17 and side["size_multiple"] == 2
    if name == "gridsample":
        sides = [list(t.dims)[-1] for t in onnx.load(str(path)).graph.initializer if len(t.dims) == 4]
        assert 513 in sides  # 17 x 17 tiles of 17 = 289 texels, padded to 2^9 + 1
    runner = create_runner(path, "onnxruntime")
    with pytest.raises(InputError, match="multiples of 2"):
        runner.infer(np.zeros((1, 1, 31, 40), np.float32), np.zeros((1, 3, 31, 40), np.float32))


def test_mmdrfuse_graphs_and_size_rules(checkpoints: dict[str, Path], no_data: dict[str, str], tmp_path: Path) -> None:
    files = {}
    for kind in ("mmdrfuse-student", "mmdrfuse-teacher"):
        files[kind] = tmp_path / f"{kind}.onnx"
        proc = cli(no_data, "export", "--model", checkpoints[kind], "-o", files[kind], "--dynamic")
        assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(0)
    for kind, path in files.items():
        runner = create_runner(path, "onnxruntime", threads=2)
        assert runner.kind == kind and runner.io == "float"
        ir = rng.integers(0, 256, (1, 1, 30, 44)).astype(np.float32)
        vi = rng.integers(0, 256, (1, 1, 30, 44)).astype(np.float32)
        want = create_runner(checkpoints[kind], "torch").infer(ir, vi)
        assert np.abs(runner.infer(ir, vi) - want).max() <= 1e-4
    with pytest.raises(InputError, match="multiples of 2"):
        create_runner(files["mmdrfuse-teacher"], "onnxruntime").infer(*(np.zeros((1, 1, 31, 44), np.float32),) * 2)
    proc = cli(no_data, "export", "--model", checkpoints["mmdrfuse-teacher"], "-o", tmp_path / "odd.onnx",
               "--height", "31", "--width", "44")
    assert_one_line_error(proc, "multiples of 2")


def test_reference_numerics_are_onnxruntime_only(reference_onnx: Path, no_data: dict[str, str],
                                                 checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """The default graph computes in float64 to reproduce PyTorch: ONNX Runtime passes it, the
    TensorRT lint and build-engine refuse it with the way out (--numerics portable)."""
    side = json.loads(reference_onnx.with_suffix(".json").read_text())
    assert side["numerics"] == "reference" and side["target"] == "onnxruntime"
    assert side["parity"]["rule"] == "max abs <= 1e-4"
    assert all(r["bound"] == 1e-4 and "torch_float32_error" not in r for r in side["parity"]["inputs"])
    code, doc = _verdict(no_data, reference_onnx, "onnxruntime")
    assert code == 0 and doc["verdict"] == "PASS"
    code, doc = _verdict(no_data, reference_onnx, "tensorrt")
    types = next(c for c in doc["checks"] if c["name"] == "types")
    assert code == 1 and types["status"] == "fail" and "--numerics portable" in types["detail"]
    proc = cli(no_data, "build-engine", "--onnx", reference_onnx, "--target", "orin-nx", "--out", tmp_path / "e")
    assert_one_line_error(proc, "re-export with --numerics portable")
    assert not (tmp_path / "e").exists()
    # the five context convolutions are MatMuls over ordered patches (the one Conv left is the Sobel)
    ops = [n.op_type for n in onnx.load(str(reference_onnx)).graph.node]
    assert ops.count("Conv") == 1 and ops.count("MatMul") >= 5


def test_static_graph_refuses_other_sizes(good_onnx: Path) -> None:
    runner = create_runner(good_onnx, "onnxruntime")
    ok = runner.infer(np.zeros((1, 1, 32, 48), np.float32), np.zeros((1, 3, 32, 48), np.float32))
    assert ok.shape == (1, 3, 32, 48)
    with pytest.raises(InputError, match="exported for 48x32 only"):
        runner.infer(np.zeros((1, 1, 40, 48), np.float32), np.zeros((1, 3, 40, 48), np.float32))
    with pytest.raises(InputError, match="no CUDAExecutionProvider|provider"):
        create_runner(good_onnx, "onnxruntime", device="cuda")
