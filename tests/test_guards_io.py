"""io/ and runtime/memory.py guards at both sides of each boundary, and the values (not only the
shapes) of what the readers return; no shared data needed. ``tools/mutation.py`` checks they bite."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.errors import CheckpointError, InputError, OutputError
from lutfuse_deploy.io.files import atomic_path, check_outputs
from lutfuse_deploy.io.images import ImagePair, find_pairs, load_pair, normalise_16bit, read_ir, read_vi
from lutfuse_deploy.runtime import memory


def _png(path, array):
    Image.fromarray(array).save(path)
    return path


# -- 16-bit IR -------------------------------------------------------------------------------------
def test_linear_16bit_is_v_times_255_over_65535_rounded():
    # 65407 = 257 * 254 + 129 -> 254 + 129/257 = 254.502: rounds up; over 65536 it would be 254.498
    # 32639 = 257 * 127 + 0    -> exactly 127
    # 128 -> 0.498 -> 0; 129 -> 0.502 -> 1 (so truncation shows too)
    raw = np.array([[0, 128, 129, 32639, 65407, 65535]], dtype=np.uint16)
    assert normalise_16bit(raw, "linear").tolist() == [[0, 0, 1, 127, 255, 255]]


def test_minmax_and_percentile_16bit_stretch_differently():
    # 0, 100, ..., 10000 (101 values): min-max spans 0..10000; the 1st/99th percentiles are 100 and 9900
    raw = (np.arange(101, dtype=np.uint16) * 100).reshape(1, 101)
    mm = normalise_16bit(raw, "minmax")
    pc = normalise_16bit(raw, "percentile")
    assert mm[0, 26] == 66  # 2600 * 255 / 10000 = 66.3
    assert pc[0, 26] == 65  # (2600 - 100) * 255 / 9800 = 65.05
    assert mm[0, 0] == pc[0, 0] == pc[0, 1] == 0  # below the 1st percentile clips to 0
    assert mm[0, 100] == pc[0, 100] == pc[0, 99] == 255


def test_16bit_ir_file_refused_unless_a_conversion_is_chosen(tmp_path):
    raw = np.array([[0, 32639], [65407, 65535]], dtype=np.uint16)
    path = tmp_path / "ir16.png"
    Image.fromarray(raw).save(path)
    with pytest.raises(InputError, match="16-bit IR image; map it to 8 bits with --ir16"):
        read_ir(path)
    assert read_ir(path, ir16="linear").tolist() == [[0, 127], [255, 255]]
    with pytest.raises(InputError, match="unknown --ir16 mode"):
        read_ir(path, ir16="gamma")


# -- 8-bit readers: values -------------------------------------------------------------------------
def test_rgb_stored_ir_becomes_pil_luma(tmp_path):
    # (299*200 + 587*100 + 114*50) / 1000 = 124.2 -> 124 (PIL luma); the red channel would be 200
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    rgb[0, 0] = (7, 7, 7)  # R = G = B stays exact
    ir = read_ir(_png(tmp_path / "ir.png", rgb))
    assert ir.dtype == np.uint8 and ir.shape == (3, 4)
    assert ir[0, 0] == 7 and np.all(ir.ravel()[1:] == 124)


def test_gray_visible_is_replicated_and_rgb_visible_gives_luma(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    vi = read_vi(_png(tmp_path / "gray.png", gray))
    assert vi.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(vi[:, :, c], gray)
    np.testing.assert_array_equal(read_vi(tmp_path / "gray.png", mode="L"), gray)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    assert np.all(read_vi(_png(tmp_path / "rgb.png", rgb), mode="L") == 124)
    np.testing.assert_array_equal(read_vi(tmp_path / "rgb.png"), rgb)


@pytest.mark.parametrize(("h", "w", "ok"), [(3, 3, True), (3, 2, False), (2, 3, False), (3, 40, True)])
def test_pair_smaller_than_3x3_refused(tmp_path, h, w, ok):
    ir = _png(tmp_path / "ir.png", np.full((h, w), 9, np.uint8))
    vi = _png(tmp_path / "vi.png", np.full((h, w, 3), 5, np.uint8))
    if ok:
        a, b = load_pair(ImagePair("x", ir, vi))
        assert a.shape == (h, w) and np.all(a == 9) and b.shape == (h, w, 3) and np.all(b == 5)
    else:
        with pytest.raises(InputError, match="smaller than 3x3"):
            load_pair(ImagePair("x", ir, vi))


@pytest.mark.parametrize("vi_hw", [(4, 6), (5, 5)])
def test_pair_of_different_sizes_refused(tmp_path, vi_hw):
    ir = _png(tmp_path / "ir.png", np.zeros((4, 5), np.uint8))
    vi = _png(tmp_path / "vi.png", np.zeros((*vi_hw, 3), np.uint8))
    with pytest.raises(InputError, match="size mismatch"):
        load_pair(ImagePair("x", ir, vi))


def test_file_and_folder_mixed_refused(tmp_path):
    f = _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    d = tmp_path / "d"
    d.mkdir()
    for ir, vi in ((f, d), (d, f)):
        with pytest.raises(InputError, match="must both be files or both be folders"):
            find_pairs(ir, vi)


def test_hidden_files_are_ignored_and_suffixes_match_in_any_case(tmp_path):
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
    _png(tmp_path / "ir" / "a.PNG", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "vi" / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "ir" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "vi" / "._a.png").write_bytes(b"\0")
    pairs, problems = find_pairs(tmp_path / "ir", tmp_path / "vi")
    assert problems == [] and [(p.name, p.ir.name, p.vi.name) for p in pairs] == [("a", "a.PNG", "a.png")]
    (tmp_path / "ir" / "b.txt").write_text("x")
    (tmp_path / "vi" / "b.png").write_bytes(b"\0")
    pairs, problems = find_pairs(tmp_path / "ir", tmp_path / "vi")
    assert [p.name for p in pairs] == ["a"] and problems == [f"{tmp_path / 'ir' / 'b.txt'}: not an image file (extension .txt)"]


# -- outputs ---------------------------------------------------------------------------------------
def test_output_that_is_an_input_through_a_symlink_refused(tmp_path):
    src = _png(tmp_path / "ir.png", np.zeros((4, 4), np.uint8))
    link = tmp_path / "link.png"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="is the input"):
        check_outputs(files=[link], inputs=[src])
    with pytest.raises(OutputError, match="is the input"):
        check_outputs(files=[tmp_path / "." / "ir.png"], inputs=[src])
    check_outputs(files=[tmp_path / "fused.png"], inputs=[src])  # a new name is fine


def test_output_below_a_file_refused_with_the_reason(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"notes.txt is a file, not a folder"):
        check_outputs(files=[blocker / "out.png"])
    with pytest.raises(OutputError, match=r"notes.txt is a file, not a folder"):
        check_outputs(folders=[blocker / "sub" / "out"])


def test_output_folder_that_is_a_file_and_output_file_that_is_a_folder_refused(tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_outputs(folders=[f])
    with pytest.raises(OutputError, match="is a folder, expected an output file name"):
        check_outputs(files=[tmp_path])
    check_outputs(folders=[tmp_path], files=[tmp_path / "new.png"])


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.png") as tmp:
            tmp.write_bytes(b"x")
        os.umask(0o027)
        with atomic_path(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o640


def test_failed_atomic_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert os.listdir(tmp_path) == ["out.png"] and target.read_bytes() == b"whole"


# -- checkpoints -----------------------------------------------------------------------------------
def _edited_checkpoint(tmp_path, value):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lutfuse_deploy.io.checkpoints import META_KEY, save_checkpoint
    from lutfuse_deploy.models import create_model

    path = save_checkpoint(create_model("mmdrfuse-student"), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    name = sorted(k for k, t in state.items() if t.is_floating_point())[0]
    state[name].view(-1)[0] = value
    save_file(state, str(path), metadata=meta)
    assert json.loads(meta[META_KEY])["weights_sha256"]
    return path


def test_edited_weights_refused(tmp_path):
    from lutfuse_deploy.io.checkpoints import load_model

    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        load_model(_edited_checkpoint(tmp_path, 0.123))


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_weights_refused(tmp_path, value):
    from lutfuse_deploy.io.checkpoints import load_model

    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(_edited_checkpoint(tmp_path, value))


# -- memory estimate -------------------------------------------------------------------------------
def test_estimate_is_linear_in_megapixels_of_1e6_pixels():
    base, per_mp = memory.PEAK_MIB[("lutfuse", "torch")]
    one = memory.estimate_mib("lutfuse", "torch", 1000, 1000)
    zero = memory.estimate_mib("lutfuse", "torch", 0, 0)
    assert one is not None and zero is not None
    assert one - zero == pytest.approx(memory.MARGIN * per_mp)  # 1000 x 1000 is one megapixel
    assert zero == pytest.approx(memory.MARGIN * base)
    assert memory.estimate_mib("lutfuse", "openvino", 100, 100) is None


def test_check_memory_refuses_one_step_past_what_is_available(monkeypatch):
    need = memory.estimate_mib("lutfuse", "onnxruntime", 4000, 3000)
    assert need is not None
    monkeypatch.setattr(memory, "available_mib", lambda: need)
    memory.check_memory("lutfuse", "onnxruntime", "cpu", (4000, 3000))  # exactly enough: runs
    monkeypatch.setattr(memory, "available_mib", lambda: need - 0.01)
    with pytest.raises(InputError, match="a 4000x3000 pair needs about"):
        memory.check_memory("lutfuse", "onnxruntime", "cpu", (4000, 3000))
    memory.check_memory("lutfuse", "onnxruntime", "cuda", (4000, 3000))  # GPU memory: not checked here


def test_available_memory_is_capped_by_the_cgroup(monkeypatch):
    class FakePath:
        def __init__(self, path):
            self.path = path

        def read_text(self):
            assert self.path == "/proc/meminfo"
            return "MemTotal: 16777216 kB\nMemAvailable: 8388608 kB\n"

    ints = {"/sys/fs/cgroup/memory.max": 3 * 2**30, "/sys/fs/cgroup/memory.current": 2 * 2**30}
    monkeypatch.setattr(memory, "Path", FakePath)
    monkeypatch.setattr(memory, "_read_int", ints.get)
    assert memory.available_mib() == 1024.0  # the cgroup leaves 1 GiB of the host's 8 GiB
    ints["/sys/fs/cgroup/memory.max"] = 20 * 2**30
    assert memory.available_mib() == 8192.0  # the host is the tighter limit
    ints.clear()
    assert memory.available_mib() == 8192.0  # no cgroup files


def test_cgroup_files_read_as_numbers_or_nothing(tmp_path):
    values = {"limit": "8589934592\n", "none": "max\n", "empty": ""}
    for name, text in values.items():
        (tmp_path / name).write_text(text)
    assert memory._read_int(str(tmp_path / "limit")) == 8 * 2**30
    assert memory._read_int(str(tmp_path / "none")) is None  # cgroup v2: no limit
    assert memory._read_int(str(tmp_path / "empty")) is None
    assert memory._read_int(str(tmp_path / "missing")) is None


def test_largest_image_is_the_one_with_most_pixels(tmp_path):
    wide = _png(tmp_path / "wide.png", np.zeros((10, 30), np.uint8))  # 30x10 = 300 px
    square = _png(tmp_path / "square.png", np.zeros((20, 20), np.uint8))  # 20x20 = 400 px
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert memory.largest_image([wide, broken, square]) == (20, 20)
    assert memory.largest_image([square, wide]) == (20, 20)
    assert memory.largest_image([broken]) is None


def test_memory_device_follows_the_backend():
    assert memory.memory_device("tensorrt", "cpu") == "cuda"
    assert memory.memory_device("onnxruntime", "cuda:1") == "cpu"
    assert memory.memory_device("openvino", "cpu") == "cpu"
    assert memory.memory_device("torch", "cuda:1") == "cuda:1"

