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
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", path, "--height", "32", "--width", "48")
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def default_onnx(checkpoints: dict[str, Path], no_data: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("default") / "lut.onnx"
    proc = cli(no_data, "export", "--model", checkpoints["lutfuse"], "-o", path)  # every default
    assert proc.returncode == 0, proc.stderr
    assert "parity vs float64 truth" in proc.stdout
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


def test_check_onnx_checks_for_every_runtime_that_runs_a_graph() -> None:
    from lutfuse_deploy.export.checks import TARGETS
    from lutfuse_deploy.runtime import ARTIFACTS

    assert {b for b, (suffixes, _) in ARTIFACTS.items() if ".onnx" in suffixes} | {"tensorrt"} == set(TARGETS)


def test_good_graph_passes_for_every_target(good_onnx: Path, no_data: dict[str, str]) -> None:
    from lutfuse_deploy.export.checks import TARGETS

    for target in TARGETS:
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
    assert sum(n.op_type == "GridSample" for n in model.graph.node) == 1
    assert json.loads(out.with_suffix(".json").read_text())["simplified"] is False
    from lutfuse_deploy.cli.export import export_cmd

    lowering = next(p for p in export_cmd.params if p.name == "lowering")
    assert "one rank-4 GridSample" in (lowering.help or "")  # the help describes the graph it makes


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
    monkeypatch.setattr(parity, "UINT8_ATOL", -1.0)  # impossible 8-bit bound: every input fails
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError, match="parity check failed"):
        torch_to_onnx(checkpoints["lutfuse"], out, height=16, width=24, lowering="gather")
    assert not list(tmp_path.iterdir())  # no .onnx, no sidecar, no temporary file


def _truth(e_off: float) -> "object":
    from lutfuse_deploy.export import parity

    value = np.linspace(0.1, 0.9, 3 * 8 * 8).reshape(1, 3, 8, 8)
    return parity.Truth(value, e_off)


@pytest.mark.parametrize("shift,e_off,passes", [
    (5e-5, 0.0, True),     # within the 1e-4 floor
    (5e-4, 0.0, False),    # 5e-4 off where PyTorch float32 is exact: a wrong graph
    (5e-4, 3e-4, True),    # 5e-4 off where PyTorch float32 is itself 3e-4 off: bound 6e-4
    (7e-4, 3e-4, False),   # over twice PyTorch's own error
])
def test_parity_rule_against_float64_truth(shift: float, e_off: float, passes: bool) -> None:
    from lutfuse_deploy.export import parity

    truth = _truth(e_off)
    row = parity.judge((truth.value + shift).astype(np.float32), truth)
    assert row["passed"] is passes and row["bound"] == pytest.approx(max(1e-4, 2 * e_off))
    assert row["max_abs"] == pytest.approx(shift, rel=1e-3)


def test_parity_rule_holds_8_bit_images_within_one_lsb() -> None:
    """A large float32 error budget never excuses an 8-bit image more than 1 LSB off."""
    from lutfuse_deploy.export import parity

    truth = _truth(5e-2)  # bound 0.1: 25 LSB
    got = truth.value.copy()
    got[0, 0, 2, 3] += 2.0 / 255
    row = parity.judge(got.astype(np.float32), truth)
    assert row["max_abs"] < row["bound"] and row["max_lsb"] == 2 and not row["passed"]
    eight = parity.to_uint8(truth.value)
    assert parity.judge(eight, truth, "uint8")["passed"]
    eight[0, 1, 1, 1] += 2
    worst = parity.judge(eight, truth, "uint8")
    assert worst["max_lsb"] == 2 and not worst["passed"]
    assert not parity.judge(np.zeros((1, 3, 8, 7), np.float32), truth)["passed"]  # wrong shape


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
        assert 512 in sides  # 17 x 17 tiles of 17 = 289 texels, padded to 2^9
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


def test_default_graph_is_float32_for_every_runtime(default_onnx: Path, no_data: dict[str, str]) -> None:
    """One default graph: float32 only, dynamic H x W, one 4-channel GridSample over the corner atlas,
    judged against float64 truth, and TensorRT's rules pass."""
    side = json.loads(default_onnx.with_suffix(".json").read_text())
    assert side["dynamic"] and side["lowering"] == "gridsample" and "numerics" not in side
    assert "float64 truth" in side["parity"]["rule"] and all(r["passed"] for r in side["parity"]["inputs"])
    model = onnx.load(str(default_onnx))
    types = {v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    assert TensorProto.DOUBLE not in types and all(t.data_type != TensorProto.DOUBLE for t in model.graph.initializer)
    samples = [n for n in model.graph.node if n.op_type == "GridSample"]
    assert len(samples) == 1
    assert [list(t.dims) for t in model.graph.initializer if len(t.dims) == 4 and t.dims[-1] == 256] == [[1, 4, 256, 256]]
    for target in ("tensorrt", "onnxruntime"):
        code, doc = _verdict(no_data, default_onnx, target)
        assert code == 0 and doc["verdict"] == "PASS", _failed(doc)


def test_float64_graphs_are_refused_for_tensorrt(no_data: dict[str, str], tmp_path: Path) -> None:
    """A float64 graph (older versions' ONNX Runtime-only export) is refused with the way out."""
    nodes = [helper.make_node("Cast", ["ir"], ["ir64"], to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["ir64"], ["ir32"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["vi", "ir32"], ["fused"])]
    path = _save(_graph(nodes, 17), tmp_path / "f64.onnx")
    code, doc = _verdict(no_data, path, "tensorrt")
    assert code == 1 and "re-export" in _failed(doc)["types"]
    proc = cli(no_data, "build-engine", "--onnx", path, "--target", "orin-nx", "--out", tmp_path / "e")
    assert_one_line_error(proc, "float64")
    assert not (tmp_path / "e").exists()


def test_static_graph_refuses_other_sizes(good_onnx: Path) -> None:
    runner = create_runner(good_onnx, "onnxruntime")
    ok = runner.infer(np.zeros((1, 1, 32, 48), np.float32), np.zeros((1, 3, 32, 48), np.float32))
    assert ok.shape == (1, 3, 32, 48)
    with pytest.raises(InputError, match="exported for 48x32 only"):
        runner.infer(np.zeros((1, 1, 40, 48), np.float32), np.zeros((1, 3, 40, 48), np.float32))
    with pytest.raises(InputError, match="no CUDAExecutionProvider|provider"):
        create_runner(good_onnx, "onnxruntime", device="cuda")


def test_uint8_mmdrfuse_graph_records_its_tanh_mapping_and_fuse_applies_it(
    checkpoints: dict[str, Path], no_data: dict[str, str], tmp_path: Path, pair_folders: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A uint8 graph has the 8-bit mapping built in: recorded, applied by fuse, a conflicting request refused."""
    from PIL import Image

    from lutfuse_deploy.cli import main

    path = tmp_path / "student-u8.onnx"
    proc = cli(no_data, "export", "--model", checkpoints["mmdrfuse-student"], "-o", path, "--io", "uint8")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(path.with_suffix(".json").read_text())["tanh_to_8bit"] == "clip"
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["tanh_to_8bit"] == "clip"
    ir, vi = pair_folders

    def fuse(*args: object) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main(["fuse", "--ir", str(ir), "--vi", str(vi), "--threads", "1", *map(str, args)])
        return int(exc.value.code or 0), capsys.readouterr().err

    code, err = fuse("--backend", "onnxruntime", "--model", path, "--out", tmp_path / "graph")
    assert code == 0 and "note: this uint8 mmdrfuse-student model maps tanh to 8 bits with clip" in err, err
    code, _ = fuse("--model", checkpoints["mmdrfuse-student"], "--tanh-to-8bit", "clip", "--out", tmp_path / "torch")
    assert code == 0
    for png in sorted((tmp_path / "torch").glob("*.png")):
        a = np.asarray(Image.open(png), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "graph" / png.name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, png.name  # the parity rule's 8-bit half
    code, err = fuse("--backend", "onnxruntime", "--model", path, "--tanh-to-8bit", "minmax", "--out", tmp_path / "x")
    assert code == 1 and err.count("\n") == 1 and "built in at export; export it with --io float" in err, err
    assert not (tmp_path / "x").exists()
