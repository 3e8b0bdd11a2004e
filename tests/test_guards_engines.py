"""engines/ guards at both sides of each boundary: manifest version and GPU checks, target and shape
validation, workspace and memory limits, precision and DLA refusals, calibration decoding (values).
No TensorRT or GPU needed; ``tools/mutation.py`` checks these tests bite."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.engines import build, calibration, manifest, targets
from lutfuse_deploy.engines.local_gpu import LocalGpu, match_target
from lutfuse_deploy.engines.precision import plan_precision
from lutfuse_deploy.engines.targets import parse_shapes, target_from_dict
from lutfuse_deploy.errors import ConfigError, EngineError, InputError


def _target(**over):
    data = {"name": "t", "compute_capability": "8.7", "tensorrt_major": 10, "precisions": ["fp32", "fp16", "int8", "best"],
            "default_precision": "fp16", "default_shapes": "128x128:640x480:1920x1080", **over}
    return target_from_dict(data, "t.yaml")


def _built(**over):
    fields = {"status": "built", "engine_file": "m.engine", "compute_capability": "8.7", "gpu_name": "Orin",
              "tensorrt_version": "10.3.0.30", "tensorrt_major": 10, **over}
    return manifest.new_manifest(**fields)


# -- manifest --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("here", "ok"), [("10.3.0.30", True), ("10.3.0", True), ("10.3.0.26", True),
                                          ("10.3.1", False), ("10.3.1.30", False), ("10.4.0", False)])
def test_plans_load_with_the_same_major_minor_patch_only(here, ok):
    m = _built()
    assert manifest.loads_with(m, here) is ok
    if ok:
        manifest.check_runtime(m, compute_capability="8.7", gpu_name="Orin", tensorrt_version=here)
    else:
        with pytest.raises(EngineError, match=rf"TensorRT 10.3.0.30 only .* this machine has TensorRT {here}"):
            manifest.check_runtime(m, compute_capability="8.7", gpu_name="Orin", tensorrt_version=here)


@pytest.mark.parametrize(("here", "ok"), [("10.3.1", True), ("10.3.1.9", True), ("10.4.0", True),
                                          ("10.3.0", False), ("10.2.9", False)])
def test_version_compatible_engines_load_with_the_same_or_later(here, ok):
    m = _built(tensorrt_version="10.3.1", version_compatible=True)
    assert manifest.loads_with(m, here) is ok


@pytest.mark.parametrize(("cc", "ok"), [("8.0", True), ("8.6", True), ("9.0", True), ("7.5", False), ("7.2", False)])
def test_ampere_plus_engines_run_from_sm_8_0(cc, ok):
    assert manifest.runs_on(_built(hardware_compatibility="ampere+"), cc) is ok


@pytest.mark.parametrize(("cc", "ok"), [("8.7", True), ("8.6", False), ("8.9", False)])
def test_plain_engines_run_on_their_compute_capability_only(cc, ok):
    assert manifest.runs_on(_built(), cc) is ok
    if not ok:
        with pytest.raises(EngineError, match="runs on sm 8.7 only"):
            manifest.check_runtime(_built(), compute_capability=cc, gpu_name="x", tensorrt_version="10.3.0")


def test_reuse_needs_the_same_tensorrt_and_the_same_engine_bytes(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    old = _built(engine_sha256=manifest.sha256_file(engine))
    same, why = manifest.reuse_decision(old, _built(), tmp_path)
    assert same and "identical engine" in why
    same, why = manifest.reuse_decision(old, _built(tensorrt_version="10.3.1"), tmp_path)
    assert not same and why == "TensorRT changed (10.3.0.30 -> 10.3.1)"
    same, why = manifest.reuse_decision(old, _built(precision="int8"), tmp_path)
    assert not same and why.startswith("precision changed")
    engine.write_bytes(b"other plan")
    same, why = manifest.reuse_decision(old, _built(), tmp_path)
    assert not same and why == "engine file does not match its manifest"


def test_engine_file_must_match_its_manifest(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    manifest.check_engine_file(_built(engine_sha256=manifest.sha256_file(engine)), engine)
    with pytest.raises(EngineError, match="sha256 differs"):
        manifest.check_engine_file(_built(engine_sha256="0" * 64), engine)


# -- targets and shapes ----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "ok"), [("3x3", True), ("2x3", False), ("3x2", False), ("2x2", False)])
def test_shapes_at_least_3x3(text, ok):
    if ok:
        assert parse_shapes(text).max == (3, 3)
    else:
        with pytest.raises(InputError, match="smaller than 3x3"):
            parse_shapes(text)


@pytest.mark.parametrize(("text", "ok"), [("64x64:64x64:128x128", True), ("64x64:128x128:128x128", True),
                                          ("64x64:32x64:128x128", False), ("64x64:64x256:128x128", False)])
def test_shapes_min_le_opt_le_max_with_equality_allowed(text, ok):
    if ok:
        parse_shapes(text)
    else:
        with pytest.raises(InputError, match="MIN <= OPT <= MAX"):
            parse_shapes(text)


def test_profile_contains_its_bounds_and_nothing_past_them():
    p = parse_shapes("32x16:64x48:128x96")  # (h, w): min (16, 32), max (96, 128)
    assert p.contains(96, 128) and p.contains(16, 32)
    assert not p.contains(97, 128) and not p.contains(96, 129)
    assert not p.contains(15, 32) and not p.contains(16, 31)


def test_memory_gb_is_read_as_gigabytes():
    assert _target(memory_gb=[16, 8]).smallest_memory_gib == pytest.approx(8e9 / 2**30)  # 7.45 GiB
    assert _target().smallest_memory_gib is None


@pytest.mark.parametrize(("value", "ok"), [("10", True), ("10.3", True), ("11.4", False), ("1.3", False)])
def test_tensorrt_min_must_be_of_the_targets_major(value, ok):
    if ok:
        assert _target(tensorrt_min=value).tensorrt_min == value
    else:
        with pytest.raises(ConfigError, match="tensorrt_min"):
            _target(tensorrt_min=value)


@pytest.mark.parametrize(("cores", "ok"), [(0, True), (2, True), (-1, False)])
def test_dla_cores_not_negative(cores, ok):
    if ok:
        assert _target(dla_cores=cores).dla_cores == cores
    else:
        with pytest.raises(ConfigError, match="dla_cores"):
            _target(dla_cores=cores)


@pytest.mark.parametrize(("gib", "ok"), [(0.25, True), (0, False), (-1, False)])
def test_workspace_gib_positive(gib, ok):
    if ok:
        assert _target(workspace_gib=gib).workspace_gib == gib
    else:
        with pytest.raises(ConfigError, match="workspace_gib: must be > 0"):
            _target(workspace_gib=gib)


def test_auto_target_picks_by_tensorrt_major_when_names_do_not():
    jp6 = _target(name="agx-jp6", tensorrt_major=10)
    jp7 = _target(name="agx-jp7", tensorrt_major=11)
    gpu = LocalGpu("Orin", "8.7", "nvidia-smi")
    assert match_target(gpu, [jp6, jp7], 10).name == "agx-jp6"
    assert match_target(gpu, [jp6, jp7], 11).name == "agx-jp7"
    with pytest.raises(EngineError, match="pass --target NAME"):
        match_target(gpu, [jp6, jp7], None)


# -- build: TensorRT minimum, workspace and memory --------------------------------------------------
@pytest.mark.parametrize(("version", "ok"), [("10.3", True), ("10.3.0", True), ("10.4", True), ("10.2.9", False)])
def test_tensorrt_minimum_is_inclusive(monkeypatch, version, ok):
    monkeypatch.setattr(build, "tensorrt_version", lambda: version)
    monkeypatch.setattr(build, "detect_gpu", lambda: LocalGpu("Orin", "8.7", "nvidia-smi"))
    got, _gpu, why = build.local_capability(_target(tensorrt_min="10.3"))
    assert (got == version) is ok
    assert ok or why == f"t needs TensorRT 10.3 or later; this machine has {version}"


def _workspace(monkeypatch, target, need_gib, workspace_gib=None):
    monkeypatch.setattr(build, "largest_layer_bytes", lambda info, hw: need_gib * 2**30 / build.WORKSPACE_PER_LAYER_BYTE)
    req = SimpleNamespace(workspace_gib=workspace_gib)
    info = SimpleNamespace(model_name="m")
    notes: list[str] = []
    return build._workspace(req, target, info, parse_shapes("64x64"), notes), notes


def test_workspace_need_must_stay_below_the_device_memory(monkeypatch):
    t = _target(memory_gb=[8])
    memory = t.smallest_memory_gib
    with pytest.raises(InputError, match="too large for t"):
        _workspace(monkeypatch, t, memory)
    ws, _ = _workspace(monkeypatch, t, memory - 0.5)
    assert ws == 7.0  # 8e9 B = 7.45 GiB; 6.95 GiB rounded up to a quarter
    # below the memory, but the quarter-GiB rounding would set 7.5 GiB on a 7.45 GiB device (an explicit
    # --workspace 7.5 is refused): the build asks for what the model needs, and says so
    ws, notes = _workspace(monkeypatch, t, memory - 0.1)
    assert ws == pytest.approx(memory - 0.1) and ws < memory
    assert "is not below the smallest t's" in notes[0]
    # exactly the memory (a 1 GiB device, the 1 GiB default workspace): the whole device is not asked for either
    one = _target(memory_gb=[(1 << 30) / 1e9], workspace_gib=1.0)
    assert one.smallest_memory_gib == 1.0
    ws, notes = _workspace(monkeypatch, one, 0.6)
    assert ws == pytest.approx(0.6) and notes


@pytest.mark.parametrize(("need", "derived"), [(0.5, 1.0), (1.0, 1.0), (1.2, 1.25), (1.25, 1.25), (1.26, 1.5)])
def test_derived_workspace_rounds_the_need_up_to_a_quarter_gib(monkeypatch, need, derived):
    ws, _ = _workspace(monkeypatch, _target(workspace_gib=1.0), need)
    assert ws == derived


def test_explicit_workspace_must_stay_below_the_device_memory(monkeypatch):
    t = _target(memory_gb=[8])
    memory = t.smallest_memory_gib
    with pytest.raises(InputError, match="is not below the smallest"):
        _workspace(monkeypatch, t, 0.1, workspace_gib=memory)
    ws, notes = _workspace(monkeypatch, t, 0.1, workspace_gib=memory - 0.01)
    assert ws == memory - 0.01 and notes == []
    with pytest.raises(InputError, match="must be > 0"):
        _workspace(monkeypatch, t, 0.1, workspace_gib=0)


def test_bundle_for_other_shapes_is_replaced_only_with_force(tmp_path):
    old = {"status": "bundle", "shapes": {"min": 1}}
    build._check_replace(old, {"shapes": {"min": 1}}, tmp_path, force=False)
    build._check_replace(old, {"shapes": {"min": 2}}, tmp_path, force=True)
    build._check_replace(None, {"shapes": {"min": 2}}, tmp_path, force=False)
    with pytest.raises(InputError, match="pass --force to replace it"):
        build._check_replace(old, {"shapes": {"min": 2}}, tmp_path, force=False)


# -- precision ---------------------------------------------------------------------------------------
def _plan(precision, major, target=None, **kw):
    opts = {"has_lookup": False, "onnx_has_qdq": False, "onnx_has_fp16": False, "have_calibration": True, **kw}
    return plan_precision(precision, major, target or _target(), **opts)


@pytest.mark.parametrize(("core", "ok"), [(0, True), (1, True), (2, False), (-1, False)])
def test_dla_core_within_the_targets_cores(core, ok):
    t = _target(dla_cores=2)
    if ok:
        _plan("fp16", 10, t, dla_core=core)
    else:
        with pytest.raises(EngineError, match=r"DLA cores 0\.\.1"):
            _plan("fp16", 10, t, dla_core=core)


@pytest.mark.parametrize(("precision", "ok"), [("fp16", True), ("int8", True), ("best", False), ("fp32", False)])
def test_dla_runs_fp16_or_int8_only(precision, ok):
    t = _target(dla_cores=2)
    if ok:
        _plan(precision, 10, t, dla_core=0)
    else:
        with pytest.raises(EngineError, match="the DLA runs fp16 or int8 only"):
            _plan(precision, 10, t, dla_core=0)


def test_dla_builds_get_a_static_profile_at_opt():
    t = _target()  # 128x128:640x480:1920x1080
    notes: list[str] = []
    req = SimpleNamespace(shapes=None, dla_core=0)
    assert build._profile(req, t, notes) == parse_shapes("640x480")
    assert notes and "static profile 640x480" in notes[0]
    assert build._profile(SimpleNamespace(shapes=None, dla_core=None), t, []) == t.default_shapes
    assert build._profile(SimpleNamespace(shapes="320x240", dla_core=0), t, []) == parse_shapes("320x240")
    with pytest.raises(InputError, match="the DLA needs a static profile"):
        build._profile(SimpleNamespace(shapes="64x64:320x240:640x480", dla_core=0), t, [])


def test_tensorrt_11_plans_are_strongly_typed():
    assert _plan("best", 10) is not None
    with pytest.raises(EngineError, match="TensorRT 11 removed --best"):
        _plan("best", 11)
    with pytest.raises(EngineError, match="TensorRT 11 has no INT8 calibrator"):
        _plan("int8", 11)


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_qdq_only_with_int8(precision):
    with pytest.raises(InputError, match="--qdq only applies"):
        _plan(precision, 10, qdq=True)
    assert _plan("int8", 10, qdq=True).qdq


# -- calibration: decoded values, not only shapes ---------------------------------------------------
def _calib_folder(tmp_path: Path, h: int = 4, w: int = 6) -> tuple[Path, np.ndarray, np.ndarray]:
    ir = (np.arange(h * w, dtype=np.uint8).reshape(h, w) * 7)
    vi = np.stack([np.full((h, w), 10, np.uint8), np.full((h, w), 120, np.uint8), ir], axis=-1)
    for sub, arr in (("ir", ir), ("vi", vi)):
        (tmp_path / sub).mkdir()
        Image.fromarray(arr).save(tmp_path / sub / "a.png")
    return tmp_path, ir, vi


def test_calibration_folder_decodes_values_in_nchw(tmp_path):
    folder, ir, vi = _calib_folder(tmp_path)
    data = calibration.load_calibration(folder, vi_channels=3, hw=(4, 6))
    assert data.ir.shape == (1, 1, 4, 6) and data.vi.shape == (1, 3, 4, 6)
    np.testing.assert_array_equal(data.ir[0, 0], ir)
    for c in range(3):
        np.testing.assert_array_equal(data.vi[0, c], vi[:, :, c])
    gray = calibration.load_calibration(folder, vi_channels=1, hw=(4, 6))
    # (299*10 + 587*120 + 114*v) / 1000 per pixel, PIL's luma with round half up in fixed point
    want = (10 * 19595 + 120 * 38470 + ir.astype(np.uint32) * 7471 + 0x8000) >> 16
    np.testing.assert_array_equal(gray.vi[0, 0], want)


def test_calibration_resizes_to_height_by_width(tmp_path):
    folder, _ir, _vi = _calib_folder(tmp_path)
    data = calibration.load_calibration(folder, vi_channels=3, hw=(2, 9))
    assert data.ir.shape == (1, 1, 2, 9) and data.vi.shape == (1, 3, 2, 9)
    assert np.all(data.vi[0, 0] == 10) and np.all(data.vi[0, 1] == 120)  # flat channels stay flat


def test_calibration_npz_must_match_the_profile(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, ir=np.zeros((2, 1, 4, 6), np.uint8), vi=np.ones((2, 3, 4, 6), np.uint8))
    data = calibration.load_calibration(path, vi_channels=3, hw=(4, 6))
    assert len(data.ir) == 2 and np.all(data.vi == 1)
    # sizes said as WIDTHxHEIGHT, as everywhere else
    with pytest.raises(InputError, match="holds ir images of 6x4; this build needs 4x6"):
        calibration.load_calibration(path, vi_channels=3, hw=(6, 4))
    # a rig graph's pairs keep each camera's size: the IR is checked against the rig's IR size
    assert calibration.load_calibration(path, vi_channels=3, hw=(4, 6), ir_hw=(4, 6)).hw == (4, 6)
    with pytest.raises(InputError, match="holds ir images of 6x4; this build needs 8x5"):
        calibration.load_calibration(path, vi_channels=3, hw=(4, 6), ir_hw=(5, 8))


@pytest.mark.parametrize(("ir_shape", "vi_shape", "needle"), [
    ((2, 3, 4, 6), (2, 3, 4, 6), r"expected ir N x 1 x H x W and vi N x 3 x H x W"),
    ((2, 1, 4, 6), (2, 1, 4, 6), r"expected ir N x 1 x H x W and vi N x 3 x H x W"),
    ((2, 1, 4, 6), (3, 3, 4, 6), r"expected ir N x 1 x H x W and vi N x 3 x H x W"),
    ((2, 1, 4, 6), (2, 3, 4, 5), r"holds vi images of 5x4; this build needs 6x4"),
])
def test_calibration_npz_layout_checked(tmp_path, ir_shape, vi_shape, needle):
    path = tmp_path / "calib.npz"
    np.savez(path, ir=np.zeros(ir_shape, np.uint8), vi=np.zeros(vi_shape, np.uint8))
    with pytest.raises(InputError, match=needle):
        calibration.load_calibration(path, vi_channels=3, hw=(4, 6))


def test_calibration_list_allows_trailing_comments(tmp_path, monkeypatch):
    folder, _ir, _vi = _calib_folder(tmp_path)
    monkeypatch.setenv("LUTFUSE_DATA", str(folder))
    listing = tmp_path / "pairs.txt"
    listing.write_text("# IR VI\nir/a.png vi/a.png  # daytime\n\n")
    assert calibration.read_list(listing) == [(folder / "ir" / "a.png", folder / "vi" / "a.png")]
    listing.write_text("ir/a.png\n")
    with pytest.raises(InputError, match="pairs.txt:1: expected 'IR_PATH VI_PATH'"):
        calibration.read_list(listing)


def test_targets_module_keeps_the_required_keys():
    """Every required key is refused when missing (one step past: the target loads without it)."""
    for key, (_type, required, _doc) in targets.TARGET_KEYS.items():
        if required and key != "name":
            data = {"name": "t", "compute_capability": "8.7", "tensorrt_major": 10, "precisions": ["fp16"],
                    "default_precision": "fp16", "default_shapes": "64x64"}
            del data[key]
            with pytest.raises(ConfigError, match=f"missing key '{key}'"):
                target_from_dict(data, "t.yaml")
