"""Calibration data: the shipped lists, folders and npz agree on pixels; cache keys; Q/DQ insertion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engines_helpers import make_onnx

from lutfuse_deploy.engines import calibration as cal
from lutfuse_deploy.errors import InputError
from lutfuse_deploy.paths import data_root

LISTS = sorted(cal.calibration_dir().glob("*.txt"))
needs_data = pytest.mark.skipif(
    not (data_root() / "train").is_dir(), reason=f"shared data not found at {data_root()}"
)


def test_lists_exist_and_hold_relative_pairs_only() -> None:
    assert {p.stem for p in LISTS} >= {"msrs", "llvip", "roadscene"}
    for path in LISTS:
        rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert 8 <= len(rows) <= cal.CALIB_MAX_IMAGES
        for ir, vi in rows:
            assert not ir.startswith("/") and not vi.startswith("/")
            assert "/ir/" in ir and "/vi/" in vi and Path(ir).stem == Path(vi).stem
            assert ir.startswith("train/"), "calibrate on training data, never on the ivif/ evaluation sets"


@needs_data
@pytest.mark.parametrize("path", LISTS, ids=lambda p: p.stem)
def test_every_listed_file_exists(path: Path) -> None:
    assert len(cal.read_list(path)) >= 8


@needs_data
def test_list_is_decoded_and_resized_to_opt(tmp_path: Path) -> None:
    small = tmp_path / "two.txt"
    small.write_text("\n".join((cal.calibration_dir() / "msrs.txt").read_text().splitlines()[:5]) + "\n")
    data = cal.load_calibration(small, vi_channels=3, hw=(24, 32))
    assert data.ir.shape == (2, 1, 24, 32) and data.vi.shape == (2, 3, 24, 32)
    assert data.ir.dtype == np.uint8 and data.vi.dtype == np.uint8
    gray = cal.load_calibration(small, vi_channels=1, hw=(24, 32))
    assert gray.vi.shape == (2, 1, 24, 32)
    # a list name resolves to calibration/NAME.txt
    assert cal.load_calibration("msrs", vi_channels=3, hw=(8, 8), limit=3).ir.shape == (3, 1, 8, 8)


def test_list_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("# header\nonly_one_path.png\n")
    with pytest.raises(InputError, match=r"bad.txt:2: expected 'IR_PATH VI_PATH'"):
        cal.read_list(bad)
    bad.write_text("no/such/ir.png no/such/vi.png\n")
    with pytest.raises(InputError, match=r"bad.txt:1: .*no/such/ir.png not found"):
        cal.read_list(bad)
    bad.write_text("# nothing\n")
    with pytest.raises(InputError, match="lists no image pairs"):
        cal.read_list(bad)


def _folder(tmp_path: Path, n: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(2)
    for sub in ("ir", "vi"):
        (tmp_path / "cal" / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(
            tmp_path / "cal" / "ir" / f"{i}.png"
        )
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
            tmp_path / "cal" / "vi" / f"{i}.jpg"
        )
    return tmp_path / "cal"


def test_folder_and_npz_give_the_same_pixels_and_digest(tmp_path: Path) -> None:
    data = cal.load_calibration(_folder(tmp_path), vi_channels=3, hw=(30, 40))
    assert len(data) == 3
    cal.save_npz(data, tmp_path / "calib.npz")
    again = cal.load_calibration(tmp_path / "calib.npz", vi_channels=3, hw=(30, 40))
    assert np.array_equal(again.ir, data.ir) and np.array_equal(again.vi, data.vi)
    assert again.digest == data.digest
    other = cal.CalibrationSet(data.ir.copy(), data.vi.copy(), "x")
    other.ir[0, 0, 0, 0] ^= 1
    assert other.digest != data.digest
    with pytest.raises(InputError, match=r"holds ir images of 40x30; this build needs 10x10 \(the profile.s OPT"):
        cal.load_calibration(tmp_path / "calib.npz", vi_channels=3, hw=(10, 10))
    with pytest.raises(InputError, match="expected ir N x 1 x H x W and vi N x 1"):
        cal.load_calibration(tmp_path / "calib.npz", vi_channels=1, hw=(30, 40))


def test_feed_matches_the_engine_io(tmp_path: Path) -> None:
    data = cal.load_calibration(_folder(tmp_path), vi_channels=3, hw=(30, 40))
    f = data.feed(1, "float")
    assert f["ir"].dtype == np.float32 and f["ir"].shape == (1, 1, 30, 40) and f["ir"].max() <= 255
    assert np.array_equal(f["vi"], data.vi[1:2].astype(np.float32))
    assert data.feed(0, "uint8")["vi"].dtype == np.uint8


def test_cache_names_are_keyed_by_onnx_data_and_tensorrt(tmp_path: Path) -> None:
    a = cal.cache_name("ab" * 32, "cd" * 32, "10.3.0.30")
    assert a == f"calib-{'ab' * 8}-{'cd' * 6}-trt10.3.0.30.cache"
    assert (
        a
        != cal.cache_name("ab" * 32, "cd" * 32, "10.4.0")
        != cal.cache_name("ef" * 32, "cd" * 32, "10.3.0.30")
    )
    (tmp_path / a).write_bytes(b"x")
    (tmp_path / cal.cache_name("ab" * 32, "cd" * 32, "11.0.0")).write_bytes(b"y")
    assert cal.find_cache(tmp_path, "ab" * 32, "cd" * 32, 10) == tmp_path / a
    assert cal.find_cache(tmp_path, "ab" * 32, "ee" * 32, 10) is None


def test_insert_qdq_quantises_convs_only_and_still_runs(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    src = make_onnx(tmp_path / "lut.onnx")
    data = cal.load_calibration(_folder(tmp_path), vi_channels=3, hw=(30, 40))
    from lutfuse_deploy.engines.onnx_info import inspect_onnx

    keep = inspect_onnx(src).guard_nodes
    out = cal.insert_qdq(src, tmp_path / "lut.qdq.onnx", data, "float", keep)
    model = onnx.load(str(out))
    by_output = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert all(by_output[i].op_type == "DequantizeLinear" for i in conv.input[:2])  # activation and weight
    # the bias stays a float32 initializer: TensorRT's parser rejects INT32 DequantizeLinear inputs
    inits = {i.name: i for i in model.graph.initializer}
    assert len(conv.input) == 3 and conv.input[2] not in by_output
    assert inits[conv.input[2]].data_type == onnx.TensorProto.FLOAT
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            assert inits[n.input[0]].data_type == onnx.TensorProto.INT8, n.name
    grid_sample = next(n for n in model.graph.node if n.op_type == "GridSample")
    assert all(
        by_output.get(i) is None or by_output[i].op_type != "DequantizeLinear" for i in grid_sample.input
    )
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2:  # symmetric: zero point 0
            zp = next(i for i in model.graph.initializer if i.name == n.input[2])
            assert not onnx.numpy_helper.to_array(zp).any()
    feed = data.feed(0, "float")
    ref = ort.InferenceSession(str(src)).run(None, feed)[0]
    got = ort.InferenceSession(str(out)).run(None, feed)[0]
    assert got.shape == ref.shape and np.isfinite(got).all()
    assert np.abs(got - ref).max() < 0.05  # INT8 context net; lookup and colour path untouched


def test_insert_qdq_is_quiet(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ONNX Runtime's quantiser chatter (prints, root-logger warnings) never reaches the user, and
    the process's logging is left as it was."""
    import logging

    src = make_onnx(tmp_path / "lut.onnx")
    data = cal.load_calibration(_folder(tmp_path), vi_channels=3, hw=(30, 40))
    handlers = list(logging.getLogger().handlers)
    capfd.readouterr()
    cal.insert_qdq(src, tmp_path / "lut.qdq.onnx", data, "float", [])
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)  # captured output is not a terminal: no bar either
    assert logging.getLogger().handlers == handlers and not logging.getLogger().manager.disable
