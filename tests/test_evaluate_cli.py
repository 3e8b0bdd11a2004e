"""``lutfuse-deploy evaluate`` and ``metrics.evaluate``: pairing, reading conventions, report layout,
one line per bad pair, exit status, atomic writers. Synthetic images only (no shared data)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.metrics.evaluate import evaluate_folders, write_csv, write_json
from lutfuse_deploy.metrics.fusion import METRIC_NAMES, compute_all

NAMES = ("00001", "00002", "00003")


def _texture(seed: int, shape=(64, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = 110 + 70 * np.sin(xx / (5.0 + seed)) * np.cos(yy / 9.0) + rng.normal(0, 8, shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _make_dataset(root: Path) -> dict[str, Path]:
    """ir/*.png (L), vi/*.png (RGB), fused/*.png: two gray, one RGB (to exercise the luma)."""
    dirs = {k: root / k for k in ("ir", "vi", "fused")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        ir = _texture(3 * i + 1)
        vi = np.stack([_texture(3 * i + 2), _texture(3 * i + 3), _texture(3 * i + 2)], axis=2)
        Image.fromarray(ir).save(dirs["ir"] / f"{name}.png")
        Image.fromarray(vi).save(dirs["vi"] / f"{name}.jpg", quality=95)  # fused is .png: stems pair them
        fused = np.maximum(ir, vi[:, :, 1])
        if i == 2:
            fused = np.stack([fused, vi[:, :, 0], ir], axis=2)  # an RGB fused image
        Image.fromarray(fused).save(dirs["fused"] / f"{name}.png")
    return dirs


def _expected(dirs: dict[str, Path], name: str, ssim_range: float = 2.0) -> dict[str, float]:
    """Read as the papers' evaluators do, via PIL directly: everything to 8-bit gray with convert('L')."""
    ir = np.asarray(Image.open(dirs["ir"] / f"{name}.png").convert("L"), dtype=np.float64)
    vi = np.asarray(Image.open(dirs["vi"] / f"{name}.jpg").convert("L"), dtype=np.float64)
    fu = np.asarray(Image.open(dirs["fused"] / f"{name}.png").convert("L"), dtype=np.float64)
    return compute_all(ir, vi, fu, ssim_data_range=ssim_range)


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lutfuse_deploy", "evaluate", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def dataset(tmp_path: Path) -> dict[str, Path]:
    return _make_dataset(tmp_path / "data")


# --------------------------------------------------------------------------- library


def test_evaluate_folders_pairs_by_stem_and_reads_gray_like_pil(dataset):
    report, problems = evaluate_folders(dataset["ir"], dataset["vi"], dataset["fused"], progress=False)
    assert problems == []
    assert list(report) == ["per_image", "mean"]
    assert list(report["per_image"]) == list(NAMES)
    for name in NAMES:
        assert report["per_image"][name] == pytest.approx(_expected(dataset, name), rel=1e-12)
    for m in METRIC_NAMES:
        assert report["mean"][m] == pytest.approx(np.mean([report["per_image"][n][m] for n in NAMES]))


def test_evaluate_folders_reports_each_bad_pair_once_and_keeps_the_rest(dataset):
    (dataset["fused"] / "00001.png").unlink()  # missing fused
    Image.fromarray(_texture(9, (32, 32))).save(dataset["fused"] / "00002.png")  # wrong size
    (dataset["ir"] / "00004.png").write_bytes(b"not a png")  # unreadable IR ...
    Image.fromarray(_texture(5)).save(dataset["vi"] / "00004.png")
    Image.fromarray(_texture(6)).save(dataset["fused"] / "00004.png")  # ... with partners
    report, problems = evaluate_folders(dataset["ir"], dataset["vi"], dataset["fused"], progress=False)
    assert list(report["per_image"]) == ["00003"]
    assert len(problems) == 3, problems
    assert all("\n" not in p for p in problems)
    by_name = {p.split(":")[0]: p for p in problems}
    assert "no fused image" in by_name["00001"]
    assert "size mismatch" in by_name["00002"] and "32x32" in by_name["00002"]
    assert "00004.png" in by_name["00004"]


def test_writers_are_strict_json_and_full_precision_csv(tmp_path):
    report = {
        "per_image": {
            "a": dict.fromkeys(METRIC_NAMES, 0.1),
            "b": {**dict.fromkeys(METRIC_NAMES, 0.3), "PSNR": math.inf},
        },
        "mean": {**dict.fromkeys(METRIC_NAMES, 0.2), "PSNR": math.inf},
    }
    write_json(tmp_path / "r.json", report)
    text = (tmp_path / "r.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    loaded = json.loads(text)
    assert loaded["per_image"]["b"]["PSNR"] is None and loaded["mean"]["EN"] == 0.2
    write_csv(tmp_path / "r.csv", report)
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert rows[0] == ["image", *METRIC_NAMES]
    assert [r[0] for r in rows[1:]] == ["a", "b", "mean"]
    assert float(rows[2][METRIC_NAMES.index("PSNR") + 1]) == math.inf
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no temp files left


# --------------------------------------------------------------------------- CLI


def test_cli_prints_table_and_writes_exact_json_and_csv(dataset, tmp_path):
    out_json, out_csv = tmp_path / "out" / "m.json", tmp_path / "out" / "m.csv"
    res = _run("--ir", dataset["ir"], "--vi", dataset["vi"], "--fused", dataset["fused"],
               "--json", out_json, "--csv", out_csv)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    for token in (*NAMES, "mean (3)", *METRIC_NAMES):
        assert token in res.stdout
    data = json.loads(out_json.read_text())
    assert list(data) == ["per_image", "mean"]
    assert list(data["per_image"]) == list(NAMES)
    assert all(list(row) == list(METRIC_NAMES) for row in data["per_image"].values())
    assert list(data["mean"]) == list(METRIC_NAMES)
    assert data["per_image"]["00003"] == pytest.approx(_expected(dataset, "00003"), rel=1e-12)
    rows = list(csv.reader(out_csv.open()))
    assert [r[0] for r in rows] == ["image", *NAMES, "mean"]
    assert float(rows[-1][1]) == pytest.approx(data["mean"]["EN"], rel=1e-15)


def test_cli_ssim_range_255(dataset, tmp_path):
    out = tmp_path / "m.json"
    res = _run("--ir", dataset["ir"], "--vi", dataset["vi"], "--fused", dataset["fused"],
               "--ssim-range", "255", "--json", out)  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())["per_image"]["00001"]["SSIM"]
    assert got == pytest.approx(_expected(dataset, "00001", 255.0)["SSIM"], rel=1e-12)
    assert got != pytest.approx(_expected(dataset, "00001", 2.0)["SSIM"], rel=1e-6)


def test_cli_bad_pair_gives_one_line_and_exit_1(dataset, tmp_path):
    (dataset["fused"] / "00002.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "m.json"
    res = _run("--ir", dataset["ir"], "--vi", dataset["vi"], "--fused", dataset["fused"], "--json", out)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("skipped: 00002:")]) == 1
    assert lines[-1].startswith("error: 1 problem(s)") and "2 pair(s) evaluated" in lines[-1]
    assert list(json.loads(out.read_text())["per_image"]) == ["00001", "00003"]  # the good ones


@pytest.mark.parametrize("case", ["empty_fused", "missing_ir"])
def test_cli_nothing_evaluated_is_a_clear_error(dataset, tmp_path, case):
    fused, ir = dataset["fused"], dataset["ir"]
    if case == "empty_fused":
        fused = tmp_path / "empty"
        fused.mkdir()
    else:
        ir = tmp_path / "does-not-exist"
    out = tmp_path / "m.json"
    res = _run("--ir", ir, "--vi", dataset["vi"], "--fused", fused, "--json", out)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert ("nothing evaluated" in last) if case == "empty_fused" else ("does-not-exist" in last)
    assert not out.exists()


def test_unwritable_report_is_one_line_error(tmp_path):
    from lutfuse_deploy.errors import LutfuseError

    report = {"per_image": {"a": dict.fromkeys(METRIC_NAMES, 0.1)}, "mean": dict.fromkeys(METRIC_NAMES, 0.1)}
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder is needed
    for writer in (write_json, write_csv):
        with pytest.raises(LutfuseError, match=f"{blocker}: exists and is not a folder"):
            writer(blocker / "r.out", report)


def test_16bit_ir_is_refused_naming_ir16_and_scored_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fused output of 16-bit thermal frames can be scored: --ir16 maps the IR as fuse --ir16 did."""
    from lutfuse_deploy.cli import main
    from lutfuse_deploy.io.images import normalise_16bit

    dirs = _make_dataset(tmp_path)
    raw = (_texture(1).astype(np.uint16) * 200 + 3000)
    Image.fromarray(raw).save(dirs["ir"] / "00001.png")  # a 16-bit PNG (mode I;16)
    args = ["evaluate", "--ir", str(dirs["ir"]), "--vi", str(dirs["vi"]), "--fused", str(dirs["fused"])]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1 and "16-bit IR image; map it to 8 bits with --ir16" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*args, "--ir16", "minmax", "--json", str(tmp_path / "m.json")])
    assert exc.value.code == 0, capsys.readouterr().err
    got = json.loads((tmp_path / "m.json").read_text())["per_image"]["00001"]
    ir = normalise_16bit(raw, "minmax").astype(np.float64)
    vi = np.asarray(Image.open(dirs["vi"] / "00001.jpg").convert("L"), dtype=np.float64)
    fu = np.asarray(Image.open(dirs["fused"] / "00001.png").convert("L"), dtype=np.float64)
    want = compute_all(ir, vi, fu)
    assert got == pytest.approx(want, rel=1e-9, nan_ok=True)


def test_every_command_named_by_the_16bit_message_has_ir16() -> None:
    """The refusal names the commands that take --ir16: the list and the commands stay in step."""
    import click

    from lutfuse_deploy.cli import cli
    from lutfuse_deploy.io.images import IR16_COMMANDS

    having = sorted(name for name, cmd in cli.commands.items()
                    if any(isinstance(p, click.Option) and "--ir16" in p.opts for p in cmd.params))
    named = sorted(IR16_COMMANDS.replace(" and ", ", ").split(", "))
    assert named == having
