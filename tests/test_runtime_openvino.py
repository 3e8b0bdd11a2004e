"""OpenVINO runner: the same exported graph as ONNX Runtime, the same answers, fp32 unless told."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image

from lutfuse_deploy.errors import InputError, MissingDependency
from lutfuse_deploy.paths import pretrained_dir
from lutfuse_deploy.runtime import create_runner
from lutfuse_deploy.runtime.openvino import OvRunner, check_input, precision_error

pytest.importorskip("openvino", reason="the openvino extra is part of dev: pip install -e '.[dev]'")

SHIPPED = {"lutfuse": "lutfuse.safetensors", "mmdrfuse-student": "mini.safetensors"}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped models through the default export (dynamic sizes)."""
    from lutfuse_deploy.export.onnx import torch_to_onnx

    out = tmp_path_factory.mktemp("ov")
    return {kind: torch_to_onnx(pretrained_dir() / name, out / f"{kind}.onnx", dynamic=True)
            for kind, name in SHIPPED.items()}


def _has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("kind", list(SHIPPED))
def test_openvino_matches_onnxruntime_on_the_same_graph(graphs: dict[str, Path], kind: str) -> None:
    ov_runner = create_runner(graphs[kind], "openvino", threads=1)
    ort_runner = create_runner(graphs[kind], "onnxruntime", threads=1)
    assert (ov_runner.kind, ov_runner.io) == (ort_runner.kind, ort_runner.io) == (kind, "float")
    for h, w in ((48, 64), (121, 97)):  # two sizes through the one dynamic graph, one of them odd
        ir, vi = check_input(kind, "float", h, w, seed=h)
        got, want = ov_runner.infer(ir, vi), ort_runner.infer(ir, vi)
        assert got.shape == want.shape and got.dtype == np.float32
        assert float(np.abs(got - want).max()) <= 1e-4
        err = precision_error(got, want)
        assert err["max_lsb"] <= 1


def test_fp32_is_set_explicitly_and_threads_are_honoured(graphs: dict[str, Path]) -> None:
    runner = OvRunner(graphs["lutfuse"], threads=1)
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert int(runner.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert runner.precision_report is None
    assert "fp32" in runner.describe_precision()


def test_bf16_is_opt_in_and_its_error_is_measured_at_load(graphs: dict[str, Path]) -> None:
    if not _has_bf16():
        with pytest.raises(InputError, match="bfloat16"):
            OvRunner(graphs["lutfuse"], precision="bf16")
        return
    runner = OvRunner(graphs["lutfuse"], threads=1, precision="bf16")
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    report = runner.precision_report
    assert report is not None and report["reference"] == "fp32"
    assert 0 < report["max_abs"] < 0.05  # bf16 really ran (not equal to fp32), and is still close
    assert sum(report["lsb_fraction"].values()) == pytest.approx(1.0)
    assert "max abs" in runner.describe_precision() and "bf16" in runner.describe_precision()


def test_precision_error_counts_8bit_differences() -> None:
    ref = np.zeros((1, 3, 2, 2), np.float32)
    test = ref.copy()
    test[0, 0, 0, 0] = 1 / 255  # one pixel one LSB off
    test[0, 1, 1, 1] = 4 / 255  # one four LSB off
    err = precision_error(test, ref)
    assert err["max_lsb"] == 4 and err["pixels"] == 12
    assert err["lsb_fraction"] == {"0": 10 / 12, "1": 1 / 12, "2": 0.0, ">2": 1 / 12}
    assert err["max_abs"] == pytest.approx(4 / 255)


def test_bad_inputs_are_refused_with_a_clear_error(graphs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such ONNX file"):
        OvRunner(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    with pytest.raises(InputError, match="openvino cannot read it"):
        OvRunner(junk)
    with pytest.raises(InputError, match="precision"):
        OvRunner(graphs["lutfuse"], precision="int8")
    with pytest.raises(InputError, match="cpu only"):
        OvRunner(graphs["lutfuse"], device="cuda")
    runner = OvRunner(graphs["lutfuse"], threads=1)
    ir, vi = check_input("lutfuse", "float", 16, 16)
    with pytest.raises(InputError, match="expected N x 3 x H x W"):
        runner.infer(ir, vi[:, :1])
    with pytest.raises(InputError, match="float32"):
        runner.infer(ir.astype(np.float64), vi)


def test_missing_openvino_names_the_extra(graphs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependency, match=r"lutfuse-deploy\[openvino\]"):
        OvRunner(graphs["lutfuse"])


def test_fuse_cli_openvino_writes_what_onnxruntime_writes(graphs: dict[str, Path], tmp_path: Path,
                                                          pair_folders: tuple[Path, Path]) -> None:
    ir, vi = pair_folders
    outs = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / backend
        proc = run_cli("fuse", "--model", graphs["lutfuse"], "--backend", backend, "--threads", "1",
                       "--ir", ir, "--vi", vi, "--out", out)
        assert proc.returncode == 0, proc.stderr
        outs[backend] = [np.asarray(Image.open(p)).astype(int) for p in sorted(out.glob("*.png"))]
    assert "INFERENCE_PRECISION_HINT f32" in proc.stderr
    assert len(outs["openvino"]) == 3
    for a, b in zip(outs["openvino"], outs["onnxruntime"], strict=True):
        assert np.abs(a - b).max() <= 1


def test_fuse_cli_refuses_bf16_for_other_backends_and_bad_graphs(graphs: dict[str, Path], tmp_path: Path,
                                                                pair_folders: tuple[Path, Path]) -> None:
    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", graphs["lutfuse"], "--backend", "onnxruntime", "--precision", "bf16",
                   "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert_one_line_error(proc, "--precision bf16 is for --backend openvino")
    assert not (tmp_path / "o").exists()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    proc = run_cli("fuse", "--model", junk, "--backend", "openvino", "--ir", ir, "--vi", vi, "--out", tmp_path / "p")
    assert_one_line_error(proc, "openvino cannot read it")


def test_profile_times_both_backends_in_one_run(graphs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    proc = run_cli("profile", "--model", graphs["lutfuse"], "--backend", "onnxruntime,openvino",
                   "--resolutions", "64x48", "--iters", "3", "--warmup", "1", "--threads", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "INFERENCE_PRECISION_HINT f32" in proc.stderr
    doc = json.loads(out.read_text())
    assert [r["backend"] for r in doc["results"]] == ["onnxruntime", "openvino"]
    assert all(len(r["rounds"]) == 3 and r["iterations"] == 3 for r in doc["results"])
    assert doc["environment"]["libraries"]["openvino"]


def test_uint8_static_graph_matches_and_refuses_other_sizes(tmp_path: Path) -> None:
    from lutfuse_deploy.export.onnx import torch_to_onnx

    graph = torch_to_onnx(pretrained_dir() / SHIPPED["mmdrfuse-student"], tmp_path / "mini-u8.onnx", io="uint8",
                          height=40, width=56)
    ov_runner, ort_runner = OvRunner(graph, threads=1), create_runner(graph, "onnxruntime", threads=1)
    assert (ov_runner.kind, ov_runner.io) == ("mmdrfuse-student", "uint8")
    ir, vi = check_input("mmdrfuse-student", "uint8", 40, 56)
    got, want = ov_runner.infer(ir, vi), ort_runner.infer(ir, vi)
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - want).max() <= 1
    assert ov_runner.check_size() == (40, 56)
    small_ir, small_vi = check_input("mmdrfuse-student", "uint8", 32, 32)
    with pytest.raises(InputError, match="exported for 56x40 only"):
        ov_runner.infer(small_ir, small_vi)
