"""INT8 measured at build time: tolerance policy, error statistics, the sensitive-layer search, the
bundle's record (manifest, README, check pairs) and build.sh's engine check, on tiny inputs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from engines_helpers import FAKE_TRTEXEC, make_onnx
from PIL import Image

from lutfuse_deploy.engines import int8_search
from lutfuse_deploy.engines.calibration import CalibrationSet, insert_qdq, load_calibration
from lutfuse_deploy.engines.int8_check import (
    LSB_OFF,
    ErrorStats,
    Tolerance,
    check_sets,
    held_out,
    outputs_8bit,
)
from lutfuse_deploy.engines.int8_search import LayerGroup, layer_groups, quantise_within
from lutfuse_deploy.engines.manifest import read_manifest
from lutfuse_deploy.engines.onnx_info import inspect_onnx, node_macs
from lutfuse_deploy.errors import EngineError, InputError
from lutfuse_deploy.paths import REPO_ROOT

HW = (64, 64)


def _pairs(folder: Path, n: int, hw: tuple[int, int] = HW, seed: int = 0) -> Path:
    """Smooth random pairs (noise blurred by upsampling): closer to photographs than white noise."""
    rng = np.random.default_rng(seed)
    for sub in ("ir", "vi"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (hw[0] // 8, hw[1] // 8, 4), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small, "RGBA").resize(hw[::-1], Image.Resampling.BILINEAR))
        Image.fromarray(img[..., 3]).save(folder / "ir" / f"{i:03d}.png")
        Image.fromarray(img[..., :3]).save(folder / "vi" / f"{i:03d}.png")
    return folder


def _set(n: int, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    return CalibrationSet(
        rng.integers(0, 256, (n, 1, *HW), dtype=np.uint8), rng.integers(0, 256, (n, 3, *HW), dtype=np.uint8), "t"
    )


# -- the policy and the numbers -----------------------------------------------------------------------


def test_tolerance_defaults_subsets_and_refusals() -> None:
    assert Tolerance.parse(None) == Tolerance(4, 32, 0.5)
    assert str(Tolerance.parse(None)) == "p99=4,max=32,float=0.5"
    t = Tolerance.parse("max=10, float=1")
    assert (t.p99, t.max, t.float_share) == (4, 10, 1)
    assert Tolerance.parse(str(t)) == t  # the manifest's text reads back
    for bad, needle in (("p98=3", "KEY=VALUE"), ("p99", "KEY=VALUE"), ("max=x", "must be a number"),
                        ("float=2", "within 0..1"), ("max=-1", "within 0..255"), (",", "at least one")):
        with pytest.raises(InputError, match=needle):
            Tolerance.parse(bad)
    assert t.holds(ErrorStats(0.5, 4, 10, 0.0)) and not t.holds(ErrorStats(0.5, 4, 11, 0.0))


def test_error_stats_in_lsb() -> None:
    ref = [np.zeros((10, 10, 3), np.uint8), np.full((10, 10), 200, np.uint8)]
    got = [ref[0].copy(), ref[1].copy()]
    got[0][0, 0, 0] = 255  # one value 255 off, and 9 more off by LSB_OFF + 1
    got[1][0, :9] = 200 - (LSB_OFF + 1)
    s = ErrorStats.of(ref, got)
    n = 300 + 100
    assert s.max == 255 and s.share_off == pytest.approx(10 / n)
    assert s.mean == pytest.approx((255 + 9 * (LSB_OFF + 1)) / n)
    assert s.p99 == pytest.approx(np.percentile([255] + [LSB_OFF + 1] * 9 + [0] * (n - 10), 99))


def test_held_out_pairs_never_calibrate() -> None:
    calib, check = held_out(_set(32))
    assert (len(calib), len(check)) == (28, 4)
    assert np.array_equal(check.ir, _set(32).ir[28:]) and "held out" in check.source
    assert [len(s) for s in held_out(_set(3))] == [2, 1]
    with pytest.raises(InputError, match="pass --check-data"):
        held_out(_set(1))


def test_check_data_overlapping_the_calibration_is_refused(tmp_path: Path) -> None:
    folder = _pairs(tmp_path / "p", 3)
    data = load_calibration(folder, vi_channels=3, hw=HW)
    with pytest.raises(InputError, match="shares 3 pair"):
        check_sets(data, str(folder), vi_channels=3, hw=HW)
    other = _pairs(tmp_path / "q", 2, seed=5)
    calib, check = check_sets(data, str(other), vi_channels=3, hw=HW)
    assert len(calib) == 3 and len(check) == 2


def test_node_macs_of_a_convolution(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "lut.onnx")
    # /ctx/Conv: 4 inputs (vi RGB + ir), 1 output, 3x3, same padding: H*W*1 outputs x 4*9 each
    assert node_macs(onnx_path, (24, 32), ["/ctx/Conv"]) == {"/ctx/Conv": 24 * 32 * 36}


# -- the search ---------------------------------------------------------------------------------------


def _fake_trial(errors: dict[frozenset[str], tuple[float, float]]):  # type: ignore[no-untyped-def]
    calls: list[frozenset[str]] = []

    def trial(exclude, name):  # type: ignore[no-untyped-def]
        key = frozenset(exclude)
        calls.append(key)
        p99, mx = errors[key]
        return Path(name), ErrorStats(p99 / 2, p99, mx, 0.0), []

    return trial, calls


def test_search_keeps_the_most_damaging_layers_first_until_the_tolerance_holds() -> None:
    a, b, c = (LayerGroup(n, (n,)) for n in "abc")
    tol = Tolerance(p99=4, max=32, float_share=1)
    errors = {
        frozenset("bc"): (2, 10),  # a quantised alone
        frozenset("ac"): (3, 90),  # b alone: the worst
        frozenset("ab"): (1, 40),  # c alone
        frozenset("b"): (2, 40),  # b kept float: c still breaks max
        frozenset("bc"): (2, 10),
    }
    trial, calls = _fake_trial(errors)
    result = int8_search.Int8Result(tol, None, None, 3)  # type: ignore[arg-type]
    path, float_nodes, _got = int8_search._search(trial, [a, b, c], tol, ErrorStats(1, 5, 100, 0.1), result)
    assert float_nodes == ["b", "c"] and path == Path("step1")
    assert [r["layers"] for r in result.ranking] == ["b", "c", "a"]
    assert calls[3:] == [frozenset("b"), frozenset("bc")]  # three alone, then two steps


def test_search_refuses_in_one_line_with_what_it_reached() -> None:
    a, b = LayerGroup("a", ("a",)), LayerGroup("b", ("b",))
    errors = {frozenset("b"): (3, 60), frozenset("a"): (2, 50)}
    trial, calls = _fake_trial(errors)
    tol = Tolerance(float_share=0.5)
    result = int8_search.Int8Result(tol, None, None, 2)  # type: ignore[arg-type]
    with pytest.raises(EngineError) as err:
        int8_search._search(trial, [a, b], tol, ErrorStats(1, 3, 70, 0.1), result)
    msg = str(err.value)
    assert "\n" not in msg and "cannot meet --int8-tolerance p99=4,max=32,float=0.5" in msg
    assert "p99 3 LSB, max 70 LSB" in msg
    assert "keeping the 1 most sensitive of 2 in float (float=0.5 allows no more) gives p99 2 LSB, max 50 LSB" in msg
    assert calls[-1] == frozenset("a")  # a did the most damage alone (60 LSB): kept in float first, then the limit


def test_layer_groups_skip_the_guard(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "mm.onnx", kind="mmdrfuse-student")
    assert layer_groups(onnx_path, ()) == [LayerGroup("/ctx/Conv", ("/ctx/Conv",))]
    assert layer_groups(onnx_path, ("/ctx/Conv",)) == []


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped MMDRFuse mini (two convolutions) exported once."""
    from lutfuse_deploy.export.onnx import torch_to_onnx

    out = tmp_path_factory.mktemp("mini")
    return torch_to_onnx(REPO_ROOT / "lutfuse_deploy" / "pretrained" / "mini.safetensors", out / "mini.onnx",
                         dynamic=True)


def test_quantise_within_on_a_real_model(mini: Path, tmp_path: Path) -> None:
    import onnx

    info = inspect_onnx(mini)
    data = load_calibration(_pairs(tmp_path / "p", 6), vi_channels=1, hw=HW)
    calib, check = held_out(data)
    common = {"io": info.io, "kind": info.kind, "guard": ()}
    loose = quantise_within(mini, tmp_path / "a.onnx", calib, check, tolerance=Tolerance(255, 255), **common)
    assert not loose.float_layers and not loose.ranking and loose.shipped is loose.all_int8
    assert loose.all_int8.stats.max > 0  # INT8 changed something
    # nothing but float meets a zero tolerance: with float=1 the search gets there, and says how
    tight = quantise_within(mini, tmp_path / "b.onnx", calib, check, tolerance=Tolerance(0, 0, 1), **common)
    assert sorted(tight.float_layers) == sorted(info_convs(mini)) and tight.shipped.stats.max == 0
    assert tight.macs_float_share == pytest.approx(1.0)
    assert tight.float_layers[0] == tight.ranking[0]["layers"]  # the most damaging alone went first
    qdq = onnx.load(str(tmp_path / "b.onnx"))
    assert not any(n.op_type == "QuantizeLinear" for n in qdq.graph.node)
    # the written graph is the one measured
    ref = outputs_8bit(mini, check, info.kind)
    again = ErrorStats.of(ref, outputs_8bit(tmp_path / "a.onnx", check, info.kind))
    assert again == loose.all_int8.stats
    with pytest.raises(EngineError, match="cannot meet"):
        quantise_within(mini, tmp_path / "c.onnx", calib, check, tolerance=Tolerance(0, 0, 0.5), **common)
    assert not (tmp_path / "c.onnx").exists()


def info_convs(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]


def test_layer_groups_cut_long_graphs_into_runs(mini: Path) -> None:
    convs = info_convs(mini)
    assert [g.nodes for g in layer_groups(mini, ())] == [(c,) for c in convs]
    (run,) = layer_groups(mini, (), max_groups=1)
    assert run.nodes == tuple(convs) and run.name == f"{convs[0]} .. {convs[-1]}"


def _two_readers(path: Path) -> Path:
    """ir/vi -> concat x; two convolutions read x (as LUT-Fuse's two read vi); their sum is the output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(3, 4, 3, 3)).astype(np.float32) * 0.01, n) for n in "ab"]
    nodes = [
        helper.make_node("Concat", ["ir", "vi"], ["x"], name="/Concat", axis=1),
        helper.make_node("Conv", ["x", "a"], ["ya"], name="/ConvA", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "b"], ["yb"], name="/ConvB", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["ya", "yb"], ["fused"], name="/Add"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", c, "H", "W"]) for n, c in (("ir", 1), ("vi", 3))]
    out = helper.make_tensor_value_info("fused", TensorProto.FLOAT, ["N", 3, "H", "W"])
    model = helper.make_model(helper.make_graph(nodes, "two", io, [out], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_layer_kept_in_float_reads_float_input(tmp_path: Path) -> None:
    """ONNX Runtime gives every reader of a quantised tensor its dequantised copy: the excluded
    convolution is rewired to the float tensor, and its sibling keeps the INT8 one."""
    import onnx
    import onnxruntime as ort

    src = _two_readers(tmp_path / "two.onnx")
    data = _set(2)
    out = insert_qdq(src, tmp_path / "q.onnx", data, "float", ["/ConvA"])
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    conv = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert list(conv["/ConvA"].input) == ["x", "a"]  # float activation, float weight
    assert [producer.get(i) for i in conv["/ConvB"].input] == ["DequantizeLinear", "DequantizeLinear"]
    read = {i for n in model.graph.node for i in n.input}
    assert all(i.name in read for i in model.graph.initializer)  # nothing left behind
    ort.InferenceSession(str(out))
    # both excluded: no Q/DQ pair is left at all
    both = onnx.load(str(insert_qdq(src, tmp_path / "f.onnx", data, "float", ["/ConvA", "/ConvB"])))
    assert {n.op_type for n in both.graph.node} == {"Concat", "Conv", "Add"}


def test_insert_qdq_reuses_one_calibration(mini: Path, tmp_path: Path) -> None:
    """The search calibrates once: the second quantisation reads the ranges file the first wrote."""
    data = load_calibration(_pairs(tmp_path / "p", 3), vi_channels=1, hw=HW)
    ranges = tmp_path / "ranges.json"
    insert_qdq(mini, tmp_path / "a.onnx", data, "float", (), ranges)
    assert ranges.is_file()
    stamp = ranges.stat().st_mtime_ns
    insert_qdq(mini, tmp_path / "b.onnx", data, "float", info_convs(mini)[:1], ranges)
    assert ranges.stat().st_mtime_ns == stamp


# -- build-engine and the bundle ----------------------------------------------------------------------


@pytest.fixture
def bundle_env(tmp_path: Path) -> tuple[Path, Path]:
    return make_onnx(tmp_path / "lut.onnx"), _pairs(tmp_path / "cal", 5)


def _build(onnx_path: Path, calib: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("build-engine", "--onnx", onnx_path, "--target", "h100", "--precision", "int8", "--qdq",
                   "--calib", calib, "--shapes", "64x64", "-o", out, *extra)


def test_build_engine_measures_records_and_stays_quiet(bundle_env: tuple[Path, Path], tmp_path: Path) -> None:
    onnx_path, calib = bundle_env
    proc = _build(onnx_path, calib, tmp_path / "e", "--int8-tolerance", "p99=255,max=255")
    assert proc.returncode == 0, proc.stderr
    # ONNX Runtime's calibration prints and root-logger warnings are gone: one progress line remains
    assert proc.stderr.strip().splitlines() == [
        "int8: quantising lut.onnx with ONNX Runtime (4 calibration pairs), checking on 1 other pair against float32"
    ]
    assert "Collecting tensor data" not in proc.stdout and "WARNING" not in proc.stdout
    folder = tmp_path / "e" / "h100" / "lut-int8"
    m = read_manifest(folder / "manifest.json")
    rec = m["int8_check"]
    assert rec["tolerance"] == m["int8_tolerance"] == "p99=255,max=255,float=0.5" and rec["within"]
    assert rec["shipped"]["pairs"] == 1 and rec["shipped"]["size"] == "64x64" and "held out" in rec["shipped"]["source"]
    assert set(rec["shipped"]["metrics_int8"]) == set(rec["shipped"]["metrics_float32"]) and rec["shipped"]["metrics_int8"]
    assert m["check_digest"] and m["check_digest"] != m["calibration_digest"]
    table_row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| Q/DQ, all 1 layers INT8"))
    readme = (folder / "README.md").read_text()
    assert table_row in readme and "p99=255,max=255" in readme
    with np.load(folder / "check.npz") as z, np.load(folder / "calib.npz") as c:
        assert z["ir"].shape == (1, 1, 64, 64) and c["ir"].shape == (4, 1, 64, 64)
    toolkit = next(ln for ln in (folder / "build.sh").read_text().splitlines() if "build-engine" in ln)
    assert "--check-data check.npz --int8-tolerance p99=255,max=255,float=0.5" in toolkit


def test_flags_that_do_not_apply_and_bad_values_are_refused(bundle_env: tuple[Path, Path], tmp_path: Path) -> None:
    onnx_path, calib = bundle_env
    out = tmp_path / "e"
    proc = run_cli("build-engine", "--onnx", onnx_path, "--target", "h100", "--precision", "fp16",
                   "--int8-tolerance", "p99=2", "-o", out)
    assert_one_line_error(proc, "apply to --precision int8 --qdq")
    proc = run_cli("build-engine", "--onnx", onnx_path, "--target", "orin-nx", "--precision", "int8",
                   "--calib", calib, "--check-data", calib, "-o", out)
    assert_one_line_error(proc, "apply to --precision int8 --qdq")
    assert_one_line_error(_build(onnx_path, calib, out, "--int8-tolerance", "p99=lots"), "p99 must be a number")
    assert_one_line_error(_build(onnx_path, calib, out, "--check-data", calib), "shares 5 pair")
    assert not out.exists()


def test_a_tolerance_nothing_meets_leaves_no_bundle(bundle_env: tuple[Path, Path], tmp_path: Path) -> None:
    onnx_path, calib = bundle_env
    proc = _build(onnx_path, calib, tmp_path / "e", "--int8-tolerance", "p99=0,max=0,float=0")
    assert_one_line_error(proc, "INT8 cannot meet --int8-tolerance p99=0,max=0,float=0")
    assert not (tmp_path / "e" / "h100" / "lut-int8").exists()


def test_a_tight_tolerance_keeps_the_layer_in_float(bundle_env: tuple[Path, Path], tmp_path: Path) -> None:
    onnx_path, calib = bundle_env
    proc = _build(onnx_path, calib, tmp_path / "e", "--int8-tolerance", "p99=0,max=0,float=1")
    assert proc.returncode == 0, proc.stderr
    rec = read_manifest(tmp_path / "e" / "h100" / "lut-int8" / "manifest.json")["int8_check"]
    assert rec["float_layers"] == ["/ctx/Conv"] and rec["int8_layers"] == 0 and rec["shipped"]["max"] == 0
    assert "kept in float by the sensitive-layer search: /ctx/Conv" in proc.stdout
    assert "no layer is left in INT8" in proc.stdout  # the one convolution went float
    progress = proc.stderr.strip().splitlines()  # quantising, then the search: no quantiser chatter
    assert len(progress) == 2 and progress[1].startswith("int8: every layer in INT8 gives") and "sensitive" in progress[1]


def test_build_sh_checks_the_engine_and_its_onnxruntime_half_runs_here(
    bundle_env: tuple[Path, Path], tmp_path: Path
) -> None:
    onnx_path, calib = bundle_env
    assert _build(onnx_path, calib, tmp_path / "e", "--int8-tolerance", "p99=255,max=255").returncode == 0
    folder = tmp_path / "e" / "h100" / "lut-int8"
    script = (folder / "build.sh").read_text()
    assert subprocess.run(["bash", "-n", str(folder / "build.sh")], check=False).returncode == 0
    lines = script.splitlines()
    body = lines[lines.index("build_trtexec() {"):]
    body = body[: body.index("}")]
    at = next(i for i, ln in enumerate(body) if "import lutfuse_deploy, onnxruntime, tensorrt" in ln)
    check = body[at + 1]
    assert "check-int8 ." in check and at > next(i for i, ln in enumerate(body) if "tee trtexec.log" in ln)
    # the whole script, trtexec route (a fake trtexec): TensorRT does not import here, so it says how to check
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text(FAKE_TRTEXEC)
    (bin_dir / "trtexec").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "BUILD_WITH": "trtexec",
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(folder / "build.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "the engine was not compared with the float32 ONNX" in proc.stderr and "check-int8" in proc.stderr
    args = shlex.split(check)[1:]  # drop ${PYTHON:-python3}
    # as written: the fake engine is no engine, so TensorRT's runner refuses it in one line
    proc = subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=600)
    assert_one_line_error(proc)
    # the same check on the Q/DQ graph in ONNX Runtime: the numbers build-engine measured, recorded
    proc = subprocess.run([sys.executable, *args, "--int8", "lut.qdq.onnx"], cwd=folder, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rec = read_manifest(folder / "manifest.json")["int8_check"]
    got = rec["checks"]["lut.qdq.onnx"]
    for key in ("mean", "p99", "max", "share_off", "metrics_int8", "metrics_float32"):
        assert got[key] == rec["shipped"][key], key
    assert got["backend"] == "onnxruntime"
    assert "| lut.qdq.onnx (onnxruntime) |" in (folder / "README.md").read_text()


def test_the_device_toolkit_route_measures_the_same(bundle_env: tuple[Path, Path], tmp_path: Path) -> None:
    """build.sh's toolkit line (build-engine on the bundle's own files) quantises and measures again on
    the bundled pairs: the same numbers as here. Run without --require-build: no GPU here."""
    onnx_path, calib = bundle_env
    assert _build(onnx_path, calib, tmp_path / "e", "--int8-tolerance", "p99=255,max=255").returncode == 0
    folder = tmp_path / "e" / "h100" / "lut-int8"
    before = read_manifest(folder / "manifest.json")
    line = next(ln for ln in (folder / "build.sh").read_text().splitlines() if "-m lutfuse_deploy build-engine" in ln)
    args = [a for a in shlex.split(line)[3:] if a != "--require-build"]
    proc = run_cli(*args, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    after = read_manifest(folder / "manifest.json")
    assert (after["calibration_digest"], after["check_digest"]) == (before["calibration_digest"], before["check_digest"])
    for key in ("mean", "p99", "max", "metrics_int8"):
        assert after["int8_check"]["shipped"][key] == before["int8_check"]["shipped"][key], key


def test_check_int8_refuses_a_result_beyond_the_tolerance(bundle_env: tuple[Path, Path], tmp_path: Path) -> None:
    onnx_path, calib = bundle_env
    assert _build(onnx_path, calib, tmp_path / "e", "--int8-tolerance", "p99=255,max=255").returncode == 0
    folder = tmp_path / "e" / "h100" / "lut-int8"
    m = json.loads((folder / "manifest.json").read_text())
    m["int8_check"]["tolerance"] = "p99=0,max=0"  # as if the build had been held to zero error
    (folder / "manifest.json").write_text(json.dumps(m))
    proc = run_cli("check-int8", folder, "--int8", "lut.qdq.onnx")
    assert_one_line_error(proc, "lut.qdq.onnx is beyond the INT8 tolerance p99=0,max=0")
    assert "lut.qdq.onnx" in read_manifest(folder / "manifest.json")["int8_check"]["checks"]  # recorded first
    assert_one_line_error(run_cli("check-int8", tmp_path), "no engine manifest")
    fp16 = run_cli("build-engine", "--onnx", onnx_path, "--target", "h100", "--precision", "fp32", "-o", tmp_path / "f")
    assert fp16.returncode == 0, fp16.stderr
    assert_one_line_error(run_cli("check-int8", tmp_path / "f" / "h100" / "lut-fp32"), "not an INT8 bundle")


def test_a_local_build_checks_its_engine(bundle_env: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Where build-engine builds (a GPU here), the engine's row is measured right after the build."""
    from lutfuse_deploy.engines import build as eb
    from lutfuse_deploy.engines.local_gpu import LocalGpu
    from lutfuse_deploy.engines.manifest import write_manifest

    def fake_build_here(spec, folder, version, gpu, cache_dir, force, notes):  # type: ignore[no-untyped-def]
        res = eb._write_bundle(spec, folder, True, "", notes)
        res.manifest.update(status="built", engine_file=spec.qdq_name)  # ONNX Runtime stands in for TensorRT
        write_manifest(folder / "manifest.json", res.manifest)
        return eb.BuildResult("built", folder, res.manifest, "fake", folder / spec.qdq_name)

    gpu = LocalGpu(name="H100", compute_capability="9.0", source="nvidia-smi")
    monkeypatch.setattr(eb, "local_capability", lambda target: ("11.0.0", gpu, ""))
    monkeypatch.setattr(eb, "_build_here", fake_build_here)
    onnx_path, calib = bundle_env
    res = eb.build_engine(eb.BuildRequest(onnx=onnx_path, target="h100", precision="int8", qdq=True,
                                          calib=str(calib), shapes="64x64", out_root=tmp_path / "e",
                                          int8_tolerance="p99=255,max=255"))
    checks = res.manifest["int8_check"]["checks"]
    assert list(checks) == ["lut.qdq.onnx"] and checks["lut.qdq.onnx"]["max"] == res.manifest["int8_check"]["shipped"]["max"]
    assert read_manifest(res.folder / "manifest.json")["int8_check"]["checks"] == checks
