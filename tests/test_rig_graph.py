"""Rig graphs: the warp inside the exported graph, equal to an independent float64 warp, through every
runner, fuse, build-engine and TensorRT-RTX's parser and builder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lutfuse_deploy.export.lowering import RigWarp
from lutfuse_deploy.export.onnx import torch_to_onnx
from lutfuse_deploy.io.checkpoints import load_model
from lutfuse_deploy.paths import REPO_ROOT
from lutfuse_deploy.rig.file import rig_from_dict, save_rig
from lutfuse_deploy.rig.overlay import crop_visible, seen_mask, warp_to_visible
from tests.conftest import assert_one_line_error, run_cli

PRETRAINED = REPO_ROOT / "lutfuse_deploy" / "pretrained"
# a 48x40 thermal frame seen by a 64x56 visible camera: scaled, shifted, slightly rotated and projective
H = np.array([[1.25, 0.03, 1.5], [-0.02, 1.3, 2.0], [4e-4, -3e-4, 1.0]])
RIG = {"ir_size": [48, 40], "vi_size": [64, 56], "homography": H.tolist()}


@pytest.fixture(scope="module")
def rig_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_rig(rig_from_dict(RIG), tmp_path_factory.mktemp("rig") / "rig.yaml")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory, rig_file: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rig-graphs")
    return {name: torch_to_onnx(PRETRAINED / f"{name}.safetensors", folder / f"{name}.onnx", rig=rig_file)
            for name in ("lutfuse", "mini")}


def _frames(seed: int = 0, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:48]
    ir = np.clip(128 + 90 * np.sin(xx / 3.0) * np.cos(yy / 4.0) + rng.normal(0, 20, (40, 48)), 0, 255)
    vi = rng.integers(0, 256, (56, 64, channels))
    return np.rint(ir).astype(np.uint8), vi.astype(np.uint8)


def test_float64_warp_is_exactly_the_pixel_centre_convention():
    """RigWarp in float64 equals scipy's bilinear warp at H^-1 (pixel centres at integers): a half-pixel
    slip (align_corners mixed up, or pixel edges taken for centres) moves it by ~0.5 px of IR gradient."""
    rig = rig_from_dict(RIG)
    ir, _ = _frames()
    warp = RigWarp(rig.inverse.tolist(), rig.ir_size, rig.output_box())
    got = warp(torch.from_numpy(ir.astype(np.float64))[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, warp_to_visible(ir, rig), atol=1e-9)
    # the same sampler with align_corners=True is far off: the test above can tell the two apart
    shifted = torch.nn.functional.grid_sample(
        torch.from_numpy(ir.astype(np.float64))[None, None],
        torch.cat([((2 * torch.from_numpy(warp_to_visible(np.mgrid[0:40, 0:48][1], rig)) / 47) - 1)[..., None],
                   ((2 * torch.from_numpy(warp_to_visible(np.mgrid[0:40, 0:48][0], rig)) / 39) - 1)[..., None]],
                  -1)[None], align_corners=False)[0, 0].numpy()
    assert np.abs(shifted - got)[seen_mask(rig)].max() > 5


def test_sidecar_and_inputs(graphs: dict[str, Path]):
    side = json.loads(graphs["lutfuse"].with_suffix(".json").read_text())
    assert side["inputs"]["ir"]["shape"] == ["batch", 1, 40, 48]
    assert side["inputs"]["vi"]["shape"] == ["batch", 3, 56, 64]
    assert side["outputs"]["fused"]["shape"] == ["batch", 3, 56, 64]
    assert side["rig"]["ir_size"] == [48, 40] and "padding_mode=zeros" in side["rig"]["outside"]
    assert side["parity"]["max_lsb"] <= 1 and side["dynamic"] is False


@pytest.mark.parametrize("name, channels", [("lutfuse", 3), ("mini", 1)])
def test_graph_equals_fusing_after_an_exact_warp(graphs: dict[str, Path], name: str, channels: int):
    """The graph against an independent path: scipy's float64 warp, then the model in float64."""
    import onnxruntime as ort

    rig = rig_from_dict(RIG)
    ir, vi = _frames(1, channels)
    session = ort.InferenceSession(str(graphs[name]), providers=["CPUExecutionProvider"])
    got = session.run(None, {"ir": ir[None, None].astype(np.float32),
                             "vi": np.moveaxis(vi, -1, 0)[None].astype(np.float32)})[0]
    model, _ = load_model(PRETRAINED / f"{name}.safetensors")
    model = model.double()
    with torch.inference_mode():
        want = model(torch.from_numpy(warp_to_visible(ir, rig))[None, None],
                     torch.from_numpy(np.moveaxis(crop_visible(vi, rig), -1, 0)[None].astype(np.float64))).numpy()
    assert np.abs(got - want).max() < 3e-4
    if name == "lutfuse":
        lsb = np.abs(np.rint(np.clip(got, 0, 1) * 255) - np.rint(np.clip(want, 0, 1) * 255))
        assert lsb.max() <= 1


def test_fuse_raw_pairs_torch_and_graph_agree(graphs: dict[str, Path], rig_file: Path, tmp_path: Path):
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
    for i in range(2):
        ir, vi = _frames(10 + i)
        Image.fromarray(ir).save(tmp_path / "ir" / f"p{i}.png")
        Image.fromarray(vi).save(tmp_path / "vi" / f"p{i}.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "ir" / "wrong.png")
    Image.fromarray(np.zeros((56, 64, 3), np.uint8)).save(tmp_path / "vi" / "wrong.png")
    common = ["fuse", "--ir", tmp_path / "ir", "--vi", tmp_path / "vi", "--quiet"]
    torch_run = run_cli(*common, "--model", PRETRAINED / "lutfuse.safetensors", "--backend", "torch", "--rig",
                        rig_file, "--out", tmp_path / "t")
    graph_run = run_cli(*common, "--model", graphs["lutfuse"], "--backend", "onnxruntime", "--out", tmp_path / "g")
    for proc in (torch_run, graph_run):
        assert proc.returncode == 1 and "2 fused, 1 failed" in proc.stdout, proc.stderr
        assert "wrong: size mismatch, ir wrong.png is 40x40" in proc.stderr
        assert "the rig's IR camera is 48x40" in proc.stderr
    for i in range(2):
        a = np.asarray(Image.open(tmp_path / "t" / f"p{i}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "g" / f"p{i}.png")).astype(int)
        assert a.shape == (56, 64, 3) and np.abs(a - b).max() <= 1


def test_fuse_refuses_a_rig_the_graph_does_not_carry(graphs: dict[str, Path], rig_file: Path, tmp_path: Path):
    ir, vi = _frames()
    Image.fromarray(ir).save(tmp_path / "ir.png")
    Image.fromarray(vi).save(tmp_path / "vi.png")
    plain = torch_to_onnx(PRETRAINED / "mini.safetensors", tmp_path / "plain.onnx")
    args = ["fuse", "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png", "--out", tmp_path / "o.png",
            "--backend", "onnxruntime", "--rig", rig_file]
    assert_one_line_error(run_cli(*args, "--model", plain), "has no rig", "export --rig")
    other = save_rig(rig_from_dict({**RIG, "homography": (H * [[1, 1, 1.01], [1, 1, 1], [1, 1, 1]]).tolist()}),
                     tmp_path / "other.yaml")
    args[-1] = other
    assert_one_line_error(run_cli(*args, "--model", graphs["lutfuse"]), "not the rig the graph was exported with")
    assert not (tmp_path / "o.png").exists()


def test_export_rig_refusals(rig_file: Path, tmp_path: Path):
    base = ["export", "--model", PRETRAINED / "lutfuse.safetensors", "-o", tmp_path / "g.onnx", "--rig", rig_file]
    assert_one_line_error(run_cli(*base, "--height", "64", "--width", "64"), "--rig fixes the graph's sizes")
    odd = save_rig(rig_from_dict({**RIG, "vi_size": [62, 56]}), tmp_path / "odd.yaml")
    proc = run_cli("export", "--model", PRETRAINED / "lutfuse-fast.safetensors", "-o", tmp_path / "g.onnx",
                   "--rig", odd)
    assert_one_line_error(proc, "multiple of 4", "62x56")
    assert not (tmp_path / "g.onnx").exists()


def test_openvino_runs_the_rig_graph(graphs: dict[str, Path]):
    from lutfuse_deploy.runtime import create_runner

    ir, vi = _frames(2)
    feed = ir[None, None].astype(np.float32), np.moveaxis(vi, -1, 0)[None].astype(np.float32)
    with create_runner(graphs["lutfuse"], "onnxruntime", threads=1) as ort_runner:
        want = ort_runner.infer(*feed)
    with create_runner(graphs["lutfuse"], "openvino", threads=1) as ov_runner:
        assert ov_runner.rig is not None
        got = ov_runner.infer(*feed)
    assert got.shape == (1, 3, 56, 64) and np.abs(got - want).max() < 1e-3


def test_build_engine_bundle_has_each_camera_size(graphs: dict[str, Path], tmp_path: Path):
    proc = run_cli("build-engine", "--onnx", graphs["mini"], "--target", "orin-nx", "-o", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    script = next((tmp_path / "e").rglob("build.sh")).read_text()
    assert "--optShapes=ir:1x1x40x48,vi:1x1x56x64" in script
    assert "static profile 64x56" in proc.stdout + proc.stderr
    manifest = json.loads(next((tmp_path / "e").rglob("manifest.json")).read_text())
    assert manifest["rig"]["ir_size"] == [48, 40] and manifest["rig"]["vi_size"] == [64, 56]


def test_tensorrt_rtx_parses_and_builds_the_rig_graph(graphs: dict[str, Path]):
    rtx = pytest.importorskip("tensorrt_rtx_bindings", reason="tensorrt-rtx-cu12-bindings is a dev extra")
    from lutfuse_deploy.engines.onnx_info import inspect_onnx
    from lutfuse_deploy.engines.precision import plan_precision
    from lutfuse_deploy.engines.targets import ShapeProfile, load_target
    from lutfuse_deploy.engines.tensorrt import onnx_to_engine, parser_errors, process_logger

    onnx = graphs["lutfuse"]
    info = inspect_onnx(onnx)
    assert info.rig_hw == {"ir": (40, 48), "vi": (56, 64)}
    logger = process_logger(rtx)
    network = rtx.Builder(logger).create_network(0)
    parser = rtx.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx)) and parser_errors(parser) == []
    grids = [network.get_layer(i) for i in range(network.num_layers)
             if network.get_layer(i).type == rtx.LayerType.GRID_SAMPLE]
    assert len(grids) == 2  # the warp and the lookup
    for layer in grids:
        layer.__class__ = rtx.IGridSampleLayer
        assert layer.interpolation_mode == rtx.InterpolationMode.LINEAR
        assert layer.sample_mode == rtx.SampleMode.FILL and not layer.align_corners
    plan = plan_precision("fp32", 11, load_target("h100"), has_lookup=True, onnx_has_qdq=False,
                          onnx_has_fp16=False, have_calibration=False)
    built = onnx_to_engine(onnx, onnx.with_suffix(".engine"), plan=plan, shapes=ShapeProfile((56, 64), (56, 64), (56, 64)),
                           vi_channels=3, workspace_gib=1.0, trt_module=rtx, input_hw=info.rig_hw)
    assert built.engine.stat().st_size > 0


def test_triton_repository_keeps_each_camera_size(graphs: dict[str, Path], tmp_path: Path):
    from lutfuse_deploy.export.triton import onnx_repository

    folder = onnx_repository(graphs["mini"], tmp_path / "repo", max_batch_size=4)
    text = (folder / "config.pbtxt").read_text()
    import re

    blocks = {name: [int(d) for d in re.findall(r"-?\d+", dims)]
              for name, dims in re.findall(r'name: "(\w+)"\s+data_type: \w+((?:\s+dims: -?\d+)+)', text)}
    assert blocks == {"ir": [1, 40, 48], "vi": [1, 56, 64], "fused": [1, 56, 64]}


def test_fuse_videos_of_two_sizes_through_the_rig(rig_file: Path, tmp_path: Path):
    from tests.video_helpers import make_video, read_video

    make_video(tmp_path / "ir.mp4", 4, w=48, h=40, seed=1)
    make_video(tmp_path / "vi.mp4", 4, w=64, h=56, seed=2)
    proc = run_cli("fuse", "--model", PRETRAINED / "mini.safetensors", "--rig", rig_file, "--ir", tmp_path / "ir.mp4",
                   "--vi", tmp_path / "vi.mp4", "--out", tmp_path / "out.mp4", "--quiet", "--backend", "torch")
    assert proc.returncode == 0, proc.stderr
    frames, _ = read_video(tmp_path / "out.mp4")
    assert len(frames) == 4 and frames[0].shape[:2] == (56, 64)
    # without the rig, two sizes are refused before anything is decoded
    proc = run_cli("fuse", "--model", PRETRAINED / "mini.safetensors", "--ir", tmp_path / "ir.mp4",
                   "--vi", tmp_path / "vi.mp4", "--out", tmp_path / "bad.mp4", "--quiet")
    assert_one_line_error(proc, "must have the same size")
    assert not (tmp_path / "bad.mp4").exists()


def test_info_describes_the_graphs_rig(graphs: dict[str, Path]):
    proc = run_cli("info", graphs["mini"], "--json")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    described = described[0] if isinstance(described, list) else described
    assert described["rig"].startswith("IR 48x40 -> visible 64x56, output visible 64x56")
    assert described["inputs"]["ir"].endswith("[batch, 1, 40, 48]")


def test_fuse_auto_backend_exports_the_rig_graph_once(rig_file: Path, tmp_path: Path, monkeypatch):
    """The default backend runs a checkpoint as its rig graph (exported, verified and cached by the rig's
    content); a second run finds it in the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ir, vi = _frames(5, 1)
    Image.fromarray(ir).save(tmp_path / "ir.png")
    Image.fromarray(vi[..., 0]).save(tmp_path / "vi.png")
    args = ["fuse", "--model", PRETRAINED / "mini.safetensors", "--rig", rig_file, "--ir", tmp_path / "ir.png",
            "--vi", tmp_path / "vi.png", "--json"]
    first = run_cli(*args, "--out", tmp_path / "a.png")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["backend"] == "onnxruntime"
    graphs = list((tmp_path / "cache").rglob("*.onnx"))
    assert len(graphs) == 1 and "rig" in json.loads(graphs[0].with_suffix(".json").read_text())
    made = graphs[0].stat().st_mtime_ns
    second = run_cli(*args, "--out", tmp_path / "b.png")
    assert second.returncode == 0, second.stderr
    assert list((tmp_path / "cache").rglob("*.onnx")) == graphs and graphs[0].stat().st_mtime_ns == made
    assert np.asarray(Image.open(tmp_path / "b.png")).shape == (56, 64)


def _raw_calibration(folder: Path, pairs: int) -> Path:
    """Raw rig frames as a calibration folder: IR 48x40 and visible 64x56, as the cameras give them."""
    for sub in ("ir", "vi"):
        (folder / sub).mkdir(parents=True)
    for i in range(pairs):
        ir, vi = _frames(30 + i)
        Image.fromarray(ir).save(folder / "ir" / f"c{i:02d}.png")
        Image.fromarray(vi).save(folder / "vi" / f"c{i:02d}.png")
    return folder


def test_int8_calibration_keeps_each_camera_size(graphs: dict[str, Path], tmp_path: Path):
    """A rig graph calibrates on raw frames of the two cameras (the graph registers them): the
    TensorRT 10 bundle stores each camera at its size, and a Q/DQ build quantises the rig graph here
    and measures it against float32 on held-out raw pairs."""
    calib = _raw_calibration(tmp_path / "calib", 8)
    proc = run_cli("build-engine", "--onnx", graphs["mini"], "--target", "orin-nx", "--precision", "int8",
                   "--calib", calib, "-o", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    with np.load(next((tmp_path / "e").rglob("calib.npz"))) as z:
        assert z["ir"].shape == (8, 1, 40, 48) and z["vi"].shape == (8, 1, 56, 64)
    proc = run_cli("build-engine", "--onnx", graphs["lutfuse"], "--target", "orin-nx", "--precision", "int8",
                   "--qdq", "--calib", calib, "-o", tmp_path / "q", "--json")  # the default tolerance
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    check = manifest["int8_check"]["shipped"]
    assert check["pairs"] == 2 and check["size"] == "64x56", check  # the last quarter of 8, held out
    # scored against the sources in the output frame (IR warped through the rig), as fuse --rig would
    assert abs(check["metrics_int8"]["SSIM"] - check["metrics_float32"]["SSIM"]) < 0.05, check
    import onnxruntime as ort

    qdq = next((tmp_path / "q").rglob("*.qdq.onnx"))
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    ir, vi = _frames(99)
    out = session.run(None, {"ir": ir[None, None].astype(np.float32), "vi": vi.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    assert out.shape == (1, 3, 56, 64)
    # a bundle's npz of the wrong camera size is refused with both sizes said as WIDTHxHEIGHT
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, ir=np.zeros((2, 1, 56, 64), np.uint8), vi=np.zeros((2, 1, 56, 64), np.uint8))
    proc = run_cli("build-engine", "--onnx", graphs["mini"], "--target", "orin-nx", "--precision", "int8",
                   "--calib", wrong, "-o", tmp_path / "w")
    assert_one_line_error(proc, "holds ir images of 64x56; this build needs 48x40")


def test_a_rig_graph_without_its_sidecar_reads_the_rig_from_its_metadata(graphs: dict[str, Path], tmp_path: Path):
    """The sidecar is optional: the rig travels in the graph's metadata too (as JSON text)."""
    import shutil

    from lutfuse_deploy.runtime import create_runner

    alone = shutil.copy(graphs["mini"], tmp_path / "mini.onnx")
    with create_runner(alone, "onnxruntime", threads=1) as runner:
        assert runner.rig is not None and tuple(runner.rig.ir_size) == (48, 40)


def test_reduced_precision_keeps_only_the_warp_and_the_lookup_in_fp32(graphs: dict[str, Path], tmp_path: Path):
    """The rig's warp samples the IR image: its grid stays FP32, but the model after it may run in
    FP16/INT8 as it does without a rig (it was all pinned to FP32 when the warp counted as a lookup)."""
    from lutfuse_deploy.engines.onnx_info import inspect_onnx

    plain = {name: torch_to_onnx(PRETRAINED / f"{name}.safetensors", tmp_path / f"{name}.onnx", height=56, width=64)
             for name in ("lutfuse", "mini")}
    for name, graph in graphs.items():
        guard = inspect_onnx(graph).guard_nodes
        warp = [n for n in guard if n.startswith("/warp/")]
        assert "/warp/GridSample" in warp, guard
        model_part = {n.removeprefix("/inner") for n in guard if n not in warp}
        assert model_part == set(inspect_onnx(plain[name]).guard_nodes), name  # none for mini: all its convs
