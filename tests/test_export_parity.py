"""The official LUT-Fuse exported with each lowering (default options otherwise), run through
``fuse --backend onnxruntime --save-float`` on the official reference pairs, meets the parity rule
against float64 truth (``export.parity.PARITY_RULE``), TNO 04 included, where the official float32
output is itself ~1.7e-4 from truth; one dynamic file serves 480x640, 720x1280 and 263x517; the
GridSample graph is TensorRT-shaped; uint8 io is within 1 LSB of truth's 8-bit image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import REF, needs_reference, reference_entries, run_cli

from lutfuse_deploy.export import parity
from lutfuse_deploy.export.lowering import GRIDSAMPLE_TENSORRT_OPSETS, LOWERINGS, make_lookup
from lutfuse_deploy.io.checkpoints import load_model
from lutfuse_deploy.io.files import sha256_file
from lutfuse_deploy.io.images import ImagePair, load_pair
from lutfuse_deploy.models.lut import quadrilinear
from lutfuse_deploy.runtime import create_runner

BOUND = 1e-4
SIZES = [(480, 640), (720, 1280), (263, 517)]
pytestmark = needs_reference


@pytest.fixture(scope="module")
def exported(official: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each lowering exported once (dynamic), through the real command."""
    out = tmp_path_factory.mktemp("onnx")
    files = {}
    for name in LOWERINGS:
        path = out / f"lut_{name}.onnx"
        proc = run_cli("export", "--model", official["lutfuse"], "-o", path, "--lowering", name, "--dynamic")
        assert proc.returncode == 0, proc.stderr
        assert "parity vs float64 truth" in proc.stdout
        files[name] = path
    return files


@pytest.fixture(scope="module")
def model(official: dict[str, Path]) -> torch.nn.Module:
    return load_model(official["lutfuse"])[0]


def _truth(model: torch.nn.Module, ir: np.ndarray, vi: np.ndarray) -> parity.Truth:
    return parity.truth_of(model, parity.ParityInput("x", ir.astype(np.float32), vi.astype(np.float32)))


@pytest.fixture(scope="module")
def reference_pairs(tmp_path_factory: pytest.TempPathFactory, model: torch.nn.Module) -> dict:
    """ir/ and vi/ folders linking the reference pairs; each pair's float64 truth (H x W x 3) and e_off."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "ir").mkdir()
    (root / "vi").mkdir()
    truths = {}
    for e in reference_entries():
        ir_src, vi_src = REF.parent / e["ir"], REF.parent / e["vi"]
        name = ir_src.stem
        (root / "ir" / ir_src.name).symlink_to(ir_src)
        (root / "vi" / f"{name}{vi_src.suffix}").symlink_to(vi_src)
        ir, vi = load_pair(ImagePair(name, ir_src, vi_src), vi_mode="RGB")
        truth = _truth(model, ir[None, None], vi.transpose(2, 0, 1)[None])
        official_error = float(np.abs(np.load(REF.parent / e["lutfuse_rgb"]) - truth.value[0].transpose(1, 2, 0)).max())
        truths[name] = (parity.Truth(truth.value[0].transpose(1, 2, 0), truth.e_off), official_error)
    return {"ir": root / "ir", "vi": root / "vi", "truths": truths}


@pytest.mark.parametrize("name", LOWERINGS)
def test_lookup_alone_on_the_official_table_is_close_to_float64_quadrilinear(name: str, model: torch.nn.Module) -> None:
    """The lowered lookup, fed the official model's own coordinates on the reference pairs, against the
    float64 quadrilinear lookup: what the atlas layout and its float32 grid cost (measured: GridSample
    9.1e-6, Gather 2.9e-7)."""
    n = model.config.nodes
    lookup = make_lookup(model.lut.detach(), name)
    for e in reference_entries():
        ir, vi = load_pair(ImagePair("p", REF.parent / e["ir"], REF.parent / e["vi"]), vi_mode="RGB")
        with torch.inference_mode():
            coords = model.coordinates(torch.from_numpy(ir[None, None].astype(np.float32)),
                                       torch.from_numpy(vi.transpose(2, 0, 1)[None].astype(np.float32)))
            coords = [torch.clamp(c, 0.0, n - 1.0) for c in coords]
            want = quadrilinear(model.lut.detach().double(), [c.double() for c in coords])
            assert float((lookup(coords).double() - want).abs().max()) <= 5e-5, e["ir"]


@pytest.mark.parametrize("name", LOWERINGS)
def test_fuse_onnxruntime_meets_the_parity_rule_on_reference_pairs(name: str, exported: dict[str, Path],
                                                                    reference_pairs: dict, tmp_path: Path) -> None:
    proc = run_cli("fuse", "--model", exported[name], "--backend", "onnxruntime", "--threads", "2",
                   "--ir", reference_pairs["ir"], "--vi", reference_pairs["vi"], "--out", tmp_path,
                   "--save-float", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert reference_pairs["truths"], "no reference pairs"
    for stem, (truth, official_error) in reference_pairs["truths"].items():
        row = parity.judge(np.load(tmp_path / f"{stem}.npy"), truth)
        assert row["passed"], (stem, row)
        # PyTorch float32 is the official semantics: its distance to truth is the official output's
        assert truth.e_off == pytest.approx(official_error, rel=0.2, abs=2e-6), stem
    ill_conditioned = [s for s, (t, _) in reference_pairs["truths"].items() if t.e_off > BOUND / 2]
    assert ill_conditioned, "expected a reference pair where float32 itself is ~1e-4 from truth (TNO 04)"


def test_one_dynamic_file_serves_every_size(exported: dict[str, Path], model: torch.nn.Module) -> None:
    ort_runner = create_runner(exported["gridsample"], "onnxruntime", threads=2)
    rng = np.random.default_rng(7)
    for h, w in SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = (np.sin(xx / 23.0) * np.cos(yy / 17.0) + 1) * 127.5
        ir = np.rint(smooth + rng.normal(0, 20, (h, w))).clip(0, 255)[None, None].astype(np.float32)
        vi = np.stack([np.roll(smooth, 9 * k, axis=1) for k in range(3)])[None]
        vi = np.rint(vi + rng.normal(0, 20, vi.shape)).clip(0, 255).astype(np.float32)
        row = parity.judge(ort_runner.infer(ir, vi), _truth(model, ir, vi))
        assert row["passed"], (h, w, row)


def test_gridsample_graph_is_rank4_bilinear_at_opset_16_to_19(exported: dict[str, Path]) -> None:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(exported["gridsample"])))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset in GRIDSAMPLE_TENSORRT_OPSETS
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*model.graph.value_info, *model.graph.input)}
    inits = {t.name: t for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "GridSample"]
    assert len(nodes) == 1  # one 4-channel call over the corner atlas
    for n in nodes:
        attrs = {a.name: (a.s.decode() if a.type == a.STRING else a.i) for a in n.attribute}
        assert attrs == {"mode": "bilinear", "padding_mode": "zeros", "align_corners": 0}
        assert ranks.get(n.input[1]) == 4 and ranks.get(n.input[0], 4) == 4
    atlas = [t for t in inits.values() if list(t.dims) == [1, 4, 256, 256]]
    assert atlas, "the 4-channel 256 x 256 atlas initializer is missing"
    gather = onnx.load(str(exported["gather"]))
    assert not any(n.op_type == "GridSample" for n in gather.graph.node)


def test_sidecar_and_metadata_describe_the_graph(exported: dict[str, Path], official: dict[str, Path]) -> None:
    path = exported["gridsample"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["kind"] == "lutfuse" and side["lowering"] == "gridsample" and side["io"] == "float"
    assert "numerics" not in side and "target" not in side  # one graph for every runtime
    assert side["opset"] == 17 and side["dynamic"] is True and side["config"]["nodes"] == 16
    assert side["source"]["sha256"] == sha256_file(official["lutfuse"])
    assert side["onnx_sha256"] == sha256_file(path)
    assert side["inputs"]["ir"]["shape"] == ["batch", 1, "height", "width"]
    assert side["inputs"]["vi"]["shape"] == ["batch", 3, "height", "width"]
    assert side["outputs"]["fused"]["shape"] == ["batch", 3, "height", "width"]
    report = side["parity"]
    assert report["rule"] == parity.PARITY_RULE and report["graph_optimization_level"] and len(report["inputs"]) >= 6
    for row in report["inputs"]:  # judged against float64 truth, noise and real pairs alike
        assert row["passed"] and 0 <= row["max_abs"] <= row["bound"] == max(BOUND, 2 * row["e_off"])
        assert row["max_lsb"] <= 1
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert props["kind"] == "lutfuse" and props["lowering"] == "gridsample" and props["io"] == "float"


@pytest.mark.parametrize("kind", ["mmdrfuse-student", "mmdrfuse-teacher"])
def test_mmdrfuse_onnx_matches_official_outputs(kind: str, official: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.onnx"
    (tmp_path / "no_data").mkdir()
    env = {**os.environ, "LUTFUSE_DATA": str(tmp_path / "no_data")}  # synthetic parity inputs only: faster
    proc = subprocess.run([sys.executable, "-m", "lutfuse_deploy", "export", "--model", str(official[kind]),
                           "-o", str(path), "--dynamic"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    runner = create_runner(path, "onnxruntime", threads=2)
    key = kind.replace("-", "_")
    checked = 0
    for e in reference_entries():
        if not e.get(key):
            continue
        ir, vi = load_pair(ImagePair("x", REF.parent / e["ir"], REF.parent / e["vi"]), vi_mode="L")
        out = runner.infer(ir[None, None].astype(np.float32), vi[None, None].astype(np.float32))[0, 0]
        ref = np.load(REF.parent / e[key])
        assert out.shape == ref.shape and float(np.abs(out - ref).max()) <= BOUND, e["ir"]
        checked += 1
    assert checked >= 1


def test_uint8_io_is_within_one_lsb(official: dict[str, Path], model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "lut_u8.onnx"
    proc = run_cli("export", "--model", official["lutfuse"], "-o", path, "--io", "uint8", "--height", "120",
                   "--width", "160", "--lowering", "gather")
    assert proc.returncode == 0, proc.stderr
    ort_runner = create_runner(path, "onnxruntime", threads=2)
    assert ort_runner.io == "uint8" and ort_runner.kind == "lutfuse"
    e = reference_entries()[0]
    ir, vi = load_pair(ImagePair("x", REF.parent / e["ir"], REF.parent / e["vi"]), vi_mode="RGB")
    ir, vi = ir[:120, :160], vi[:120, :160]
    got = ort_runner.infer(ir[None, None], np.ascontiguousarray(vi.transpose(2, 0, 1)[None]))
    truth = _truth(model, ir[None, None], vi.transpose(2, 0, 1)[None])
    assert got.dtype == np.uint8 and got.shape == truth.value.shape
    assert parity.judge(got, truth, "uint8")["passed"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["dynamic"] is False and side["inputs"]["ir"]["shape"] == ["batch", 1, 120, 160]
    assert side["parity"]["unit"].startswith("LSB") and side["parity"]["max_lsb"] <= 1
