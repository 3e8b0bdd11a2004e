"""`build-engine` and `targets` from the command line: every refusal is one line, non-zero, no traceback,
and nothing is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from engines_helpers import make_onnx

from lutfuse_deploy.cli import main
from lutfuse_deploy.engines import build as eb
from lutfuse_deploy.engines import local_gpu as lg
from lutfuse_deploy.engines import targets as tg


@pytest.fixture(autouse=True)
def no_local_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "TensorRT is not installed here"))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def refuse(args: list[str], capsys: pytest.CaptureFixture[str], needle: str, out_root: Path) -> str:
    code, out, err = run_cli([*args, "-o", str(out_root)], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert not out_root.exists() or not any(out_root.rglob("manifest.json")), (
        "a refusal must not write output"
    )
    return lines[0]


@pytest.fixture
def lut(tmp_path: Path) -> Path:
    return make_onnx(tmp_path / "lut.onnx")


def test_unknown_target(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "jetson-tx9"],
        capsys,
        "unknown target 'jetson-tx9'",
        tmp_path / "e",
    )


@pytest.mark.parametrize("shapes", ["480x640:240x320", "480-640", "480x640:240x320:1080x1920", "2x2"])
def test_bad_shapes(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], shapes: str) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--shapes", shapes],
        capsys,
        "bad shapes",
        tmp_path / "e",
    )


def test_int8_without_calibration_data(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--precision", "int8"],
        capsys,
        "int8 needs calibration data",
        tmp_path / "e",
    )
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--precision", "best"],
        capsys,
        "best needs calibration data",
        tmp_path / "e",
    )


def test_trt11_has_no_int8_calibrator(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "h100", "--precision", "int8", "--calib", "msrs"],
        capsys,
        "TensorRT 11 has no INT8 calibrator: add --qdq",
        tmp_path / "e",
    )


def test_trt11_has_no_best(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    custom = _custom_target(tmp_path, tensorrt_major=11, precisions=["fp32", "fp16", "int8", "best"])
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", str(custom), "--precision", "best"],
        capsys,
        "TensorRT 11 removed --best",
        tmp_path / "e",
    )


def test_dla_cannot_run_gridsample(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--dla", "0"],
        capsys,
        "the DLA of orin-nx cannot run GridSample",
        tmp_path / "e",
    )
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nano", "--dla", "0"],
        capsys,
        "target orin-nano has no DLA",
        tmp_path / "e",
    )


def _custom_target(tmp_path: Path, **change: object) -> Path:
    data = {**yaml.safe_load((tg.targets_dir() / "rtx-3090.yaml").read_text()), "name": "old-gpu", **change}
    if "precisions" in change:
        data["default_precision"] = data["precisions"][0]  # type: ignore[index]
    path = tmp_path / "old-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_fp16_on_a_target_without_it(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    custom = _custom_target(tmp_path, precisions=["fp32", "int8"])
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", str(custom), "--precision", "fp16"],
        capsys,
        "target old-gpu does not offer fp16 (it offers fp32, int8)",
        tmp_path / "e",
    )


def test_missing_and_non_onnx_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(tmp_path / "nope.onnx"), "--target", "orin-nx"],
        capsys,
        "no such ONNX file",
        tmp_path / "e",
    )
    txt = tmp_path / "model.txt"
    txt.write_text("hello")
    refuse(
        ["build-engine", "--onnx", str(txt), "--target", "orin-nx"],
        capsys,
        "is not an .onnx file",
        tmp_path / "e",
    )
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xff not protobuf \x12\x34" * 10)
    refuse(
        ["build-engine", "--onnx", str(garbage), "--target", "orin-nx"],
        capsys,
        "garbage.onnx is not",
        tmp_path / "e",
    )


def test_onnx_that_is_not_one_of_ours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    path = tmp_path / "other.onnx"
    onnx.save(
        helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])),
        str(path),
    )
    refuse(
        ["build-engine", "--onnx", str(path), "--target", "orin-nx"],
        capsys,
        "expected inputs ir, vi and output fused",
        tmp_path / "e",
    )


def test_gridsample_outside_opsets_16_to_19(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_onnx(tmp_path / "lut20.onnx", opset=20)
    refuse(
        ["build-engine", "--onnx", str(path), "--target", "orin-nx"],
        capsys,
        "GridSample at opset 20",
        tmp_path / "e",
    )


def test_static_export_needs_its_own_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_onnx(tmp_path / "s.onnx", static_hw=(480, 640))
    refuse(
        ["build-engine", "--onnx", str(path), "--target", "orin-nx"],
        capsys,
        "was exported for 640x480 (WxH) only: pass --shapes 640x480",
        tmp_path / "e",
    )


def test_bad_remote_and_bad_workspace(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--remote", "-oProxyCommand=x"],
        capsys,
        "bad --remote",
        tmp_path / "e",
    )
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--workspace", "0"],
        capsys,
        "--workspace must be > 0",
        tmp_path / "e",
    )


def test_qdq_only_with_int8(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--precision", "fp16", "--qdq"],
        capsys,
        "--qdq only applies",
        tmp_path / "e",
    )


def test_unknown_calibration_list(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        [
            "build-engine",
            "--onnx",
            str(lut),
            "--target",
            "orin-nx",
            "--precision",
            "int8",
            "--calib",
            "nosuch",
        ],
        capsys,
        "calibration data 'nosuch' not found",
        tmp_path / "e",
    )


def test_auto_without_a_gpu(
    lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lg, "detect_gpu", lambda: None)
    refuse(
        ["build-engine", "--onnx", str(lut), "--target", "auto"],
        capsys,
        "--target auto needs a local NVIDIA GPU",
        tmp_path / "e",
    )


def test_bundle_message_names_the_folder_and_the_device_command(
    lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        [
            "build-engine",
            "--onnx",
            str(lut),
            "--target",
            "orin-nx",
            "--precision",
            "fp16",
            "-o",
            str(tmp_path / "e"),
        ],
        capsys,
    )
    folder = tmp_path / "e" / "orin-nx" / "lut-fp16"
    assert code == 0 and err == ""
    assert "no engine built here: TensorRT is not installed here" in out
    assert f"bundle: {folder}" in out and f"bash {folder}/build.sh" in out


def test_targets_json_lists_every_shipped_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["targets", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["orin-nx"]["compute_capability"] == "8.7"
    assert rows["rtx-4060ti"]["anchors"][0]["latency_ms"] == pytest.approx(4.70)
    code, out, _ = run_cli(["targets"], capsys)
    assert code == 0 and "orin-nx" in out and "published, not measured" in out


# -- the real entry point, in a fresh interpreter ----------------------------------------------------


def test_issue_check_orin_nx_fp16_bundle_via_the_console(lut: Path, tmp_path: Path) -> None:
    """The issue's check: no GPU here -> a bundle whose manifest has the ONNX sha256 and sm 8.7."""
    import hashlib

    from lutfuse_deploy.engines.tensorrt import tensorrt_version

    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here: build-engine would build instead of bundling")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lutfuse_deploy",
            "build-engine",
            "--onnx",
            str(lut),
            "--target",
            "orin-nx",
            "--precision",
            "fp16",
            "-o",
            str(tmp_path / "e"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["action"] == "bundle"
    manifest = json.loads((Path(result["folder"]) / "manifest.json").read_text())
    assert manifest["onnx_sha256"] == hashlib.sha256(lut.read_bytes()).hexdigest()
    assert manifest["compute_capability"] == "8.7"


def test_refusal_via_the_console_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lutfuse_deploy",
            "build-engine",
            "--onnx",
            str(tmp_path / "x.onnx"),
            "--target",
            "orin-nx",
            "-o",
            str(tmp_path / "e"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: no such ONNX file: {tmp_path / 'x.onnx'}"]


def test_unsafe_names_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spaced = make_onnx(tmp_path / "my model.onnx")
    refuse(
        ["build-engine", "--onnx", str(spaced), "--target", "orin-nx"],
        capsys,
        "model name (set it with --name) 'my model' may only use",
        tmp_path / "e",
    )
    custom = _custom_target(tmp_path, name="old gpu")
    refuse(
        ["build-engine", "--onnx", str(make_onnx(tmp_path / "ok.onnx")), "--target", str(custom)],
        capsys,
        "target name 'old gpu' may only use",
        tmp_path / "e",
    )


# -- one size notation: WIDTHxHEIGHT ----------------------------------------------------------------


@pytest.mark.parametrize(("command", "option"), [("build-engine", "--shapes"), ("profile", "--resolutions"),
                                                 ("demo", "--size")])
def test_every_size_option_says_width_by_height(command: str, option: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_cli([command, "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert option in flat and "WIDTHxHEIGHT" in flat


def test_shapes_are_width_by_height(lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--shapes",
                              "640x480", "-o", str(tmp_path / "e")], capsys)
    assert code == 0, err
    assert "shapes 640x480:640x480:640x480 (WxH)" in out
    m = json.loads((tmp_path / "e" / "orin-nx" / "lut-fp16" / "manifest.json").read_text())
    assert m["shapes"]["opt"] == {"width": 640, "height": 480}


def test_a_maximum_the_target_cannot_hold_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lut = make_onnx(tmp_path / "lut.onnx")
    small = yaml.safe_load((tg.targets_dir() / "orin-nano.yaml").read_text())
    small.update(name="tiny", memory_gb=[0.05])  # 50 MB: the test graph's largest layer at 4096x4096 exceeds it
    target = tmp_path / "tiny.yaml"
    target.write_text(yaml.safe_dump(small))
    line = refuse(["build-engine", "--onnx", str(lut), "--target", str(target), "--shapes",
                   "128x128:640x480:4096x4096"], capsys, "--shapes max 4096x4096 (WxH) is too large for tiny",
                  tmp_path / "e")
    assert "lower the maximum" in line
    code, _out, err = run_cli(["build-engine", "--onnx", str(lut), "--target", str(target), "--shapes",
                               "128x128:320x240:640x480", "-o", str(tmp_path / "ok")], capsys)
    assert code == 0, err


def test_a_bundle_for_other_shapes_is_not_replaced_silently(lut: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out_root = tmp_path / "e"
    assert run_cli(["build-engine", "--onnx", str(lut), "--target", "orin-nx", "-o", str(out_root)], capsys)[0] == 0
    manifest = out_root / "orin-nx" / "lut-fp16" / "manifest.json"
    before = manifest.read_bytes()
    code, _out, err = run_cli(["build-engine", "--onnx", str(lut), "--target", "orin-nx", "--shapes", "640x480",
                               "-o", str(out_root)], capsys)
    assert code != 0 and err.startswith("error: ") and "pass --force to replace it" in err
    assert manifest.read_bytes() == before


def _ir16_calibration(folder: Path, pairs: int = 3) -> Path:
    """A calibration folder whose IR images are 16-bit PNGs (radiometric thermal), visible RGB."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (folder / sub).mkdir(parents=True)
    for i in range(pairs):
        Image.fromarray((rng.integers(0, 40, (48, 64)) * 50 + 20000).astype(np.uint16)).save(folder / "ir" / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / "vi" / f"{i}.png")
    return folder


def test_calibration_images_with_16bit_ir_need_and_take_ir16(
    lut: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """16-bit IR in --calib is refused as everywhere else, mapped by --ir16 as `fuse --ir16` maps it
    (the bundle's calib.npz holds the mapped 8-bit frames), and --ir16 or --calib where no
    calibration happens is refused rather than ignored."""
    import numpy as np

    calib = str(_ir16_calibration(tmp_path / "c16"))
    base = ["build-engine", "--onnx", str(lut), "--target", "orin-nx"]
    refuse([*base, "--precision", "int8", "--calib", calib], capsys, "16-bit", tmp_path / "e")
    refuse([*base, "--precision", "fp16", "--calib", calib], capsys, "drop --calib", tmp_path / "e")
    refuse([*base, "--precision", "fp16", "--ir16", "minmax"], capsys, "--ir16 minmax: maps the IR of --calib",
           tmp_path / "e")
    spans = {}
    for mode in ("minmax", "linear"):
        code, _out, err = run_cli([*base, "--precision", "int8", "--calib", calib, "--ir16", mode,
                                   "-o", str(tmp_path / mode)], capsys)
        assert code == 0, err
        (npz,) = (tmp_path / mode).rglob("calib.npz")
        ir = np.load(npz)["ir"]
        spans[mode] = int(ir.max()) - int(ir.min())
    assert spans["minmax"] > 200 > 30 > spans["linear"], spans  # minmax stretches; linear v*255/65535 barely moves
