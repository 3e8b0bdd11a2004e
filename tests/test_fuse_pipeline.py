"""The fusion pipeline (``lutfuse_deploy.fuse``) and the batch behaviour of ``fuse``: options that do
not apply are refused, pairs too big for memory are skipped by name, Ctrl-C says what was done and
--skip-existing continues, reading and writing run beside the model, the runner decides which sizes
pair, swapped folders are noticed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, pair_folders, run_cli, synthetic_pair  # noqa: F401
from PIL import Image

from lutfuse_deploy.cli import main
from lutfuse_deploy.fuse.pipeline import FuseSummary, run
from lutfuse_deploy.fuse.sources import FolderSource, Pair
from lutfuse_deploy.io.images import ImagePair
from lutfuse_deploy.runtime import create_runner


def _main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``lutfuse-deploy ARGS`` in this process (so tests can patch it), one thread."""
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--threads", "1", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(exc.value.code or 0), out, err


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _folders(tmp_path: Path, n: int, h: int = 48, w: int = 64) -> tuple[Path, Path]:
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    ir.mkdir(exist_ok=True)
    vi.mkdir(exist_ok=True)
    for i in range(n):
        a, b = synthetic_pair(h, w, seed=i)
        Image.fromarray(a).save(ir / f"{i:03d}.png")
        Image.fromarray(b).save(vi / f"{i:03d}.png")
    return ir, vi


@pytest.mark.parametrize("extra,needle,why", [
    (("--crf", "20"), "--crf 20 is for videos", "not video files"),
    (("--trim", "--save-frames", "f"), "--trim, --save-frames f are for videos", "not video files"),
    (("--tanh-to-8bit", "minmax"), "--tanh-to-8bit minmax is for MMDRFuse models", "is a lutfuse model"),
    (("--device", "cpu", "--backend", "onnxruntime"), "--device cpu is for --backend torch", "onnxruntime"),
])
def test_options_that_do_not_apply_are_refused(tmp_path: Path, pair_folders: tuple[Path, Path],  # noqa: F811
                                               models: dict, capsys: pytest.CaptureFixture[str],
                                               extra: tuple[str, ...], needle: str, why: str) -> None:
    ir, vi = pair_folders
    code, _, err = _main(capsys, "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", tmp_path / "o", *extra)
    (line,) = _errors(err)
    assert code == 1 and needle in line and why in line, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "f").exists()


def test_image_options_are_refused_for_videos(tmp_path: Path, models: dict,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("av")
    from video_helpers import make_video

    ir, vi = make_video(tmp_path / "ir.mp4", 3, seed=1), make_video(tmp_path / "vi.mp4", 3, seed=2)
    for extra in (("--save-float",), ("--skip-existing",)):
        code, _, err = _main(capsys, "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out",
                             tmp_path / "o.mp4", *extra)
        (line,) = _errors(err)
        assert code == 1 and f"{extra[0]} is for image pairs" in line and "fuses videos" in line
        assert not (tmp_path / "o.mp4").exists()


def test_a_pair_too_big_for_memory_is_named_and_skipped(tmp_path: Path, models: dict, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from lutfuse_deploy.runtime import memory

    ir, vi = _folders(tmp_path, 2)
    a, b = synthetic_pair(192, 256, seed=9)
    Image.fromarray(a).save(ir / "big.png")
    Image.fromarray(b).save(vi / "big.png")
    small, big = (memory.estimate_mib("lutfuse", "torch", w, h) for w, h in ((64, 48), (256, 192)))
    assert small is not None and big is not None and small < big
    monkeypatch.setattr(memory, "available_mib", lambda: (small + big) / 2)
    code, out, err = _main(capsys, "--model", models["lutfuse"], "--backend", "torch", "--ir", ir, "--vi", vi,
                           "--out", tmp_path / "o")
    (line,) = _errors(err)
    assert code == 1 and str(ir / "big.png") in line and "256x192" in line and "--no-memory-check" in line
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["000.png", "001.png"]
    assert "2 fused, 1 failed" in out


class _Interrupting:
    """A runner that is interrupted (Ctrl-C reaches the main thread) at its ``after``-th pair."""

    def __init__(self, runner, after: int) -> None:  # noqa: ANN001
        self.runner, self.after, self.calls = runner, after, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.runner, name)

    def __enter__(self) -> _Interrupting:
        self.runner.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.deactivate()

    def infer(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.runner.infer(ir, vi)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    import lutfuse_deploy.cli.fuse as fuse_cli

    make = fuse_cli.make_runner
    monkeypatch.setattr(fuse_cli, "make_runner", lambda *a, **k: _Interrupting(make(*a, **k), after))


def test_ctrl_c_says_what_was_done_and_skip_existing_continues(tmp_path: Path, models: dict,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    ir, vi = _folders(tmp_path, 6)
    out = tmp_path / "o"
    args = ("--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", out)
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        code, stdout, err = _main(capsys, *args, "--json")
    assert code == 130
    assert f"interrupted: 2 fused, 0 failed, 4 left, outputs in {out}" in err and "--skip-existing" in err
    summary = json.loads(stdout)  # the summary so far, as JSON
    assert summary["interrupted"] is True and (summary["done"], summary["left"]) == (2, 4)
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png"]  # complete files only
    before = (out / "000.png").stat().st_mtime_ns
    code, stdout, err = _main(capsys, *args, "--skip-existing")
    assert code == 0, err
    assert "4 fused, 0 failed, 2 skipped (outputs already there)" in stdout
    assert sorted(p.name for p in out.iterdir()) == [f"{i:03d}.png" for i in range(6)]
    assert (out / "000.png").stat().st_mtime_ns == before  # not written again


def test_interrupted_video_writes_nothing_and_leaves_no_frames_folder(tmp_path: Path, models: dict,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("av")
    from video_helpers import make_video

    ir, vi = make_video(tmp_path / "ir.mp4", 6, seed=1), make_video(tmp_path / "vi.mp4", 6, seed=2)
    _interrupt_at(monkeypatch, 3)
    code, _, err = _main(capsys, "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", tmp_path / "o.mp4",
                         "--save-frames", tmp_path / "frames")
    assert code == 130 and "interrupted: 2 of 6 frames fused, nothing written" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir.mp4", "vi.mp4"]


def test_reading_and_writing_run_beside_the_runner(tmp_path: Path, models: dict) -> None:
    """Structure, not speed: the source is read and the sink written on threads of their own."""
    ir, vi = _folders(tmp_path, 3)
    pairs = [ImagePair(p.stem, p, vi / p.name) for p in sorted(ir.iterdir())]
    threads: dict[str, set[str]] = {"read": set(), "write": set()}

    class Recorded(FolderSource):
        def read(self, pair: ImagePair) -> Pair:
            threads["read"].add(threading.current_thread().name)
            return super().read(pair)

    class Sink:
        def write(self, key: str, fused: np.ndarray, t_capture: float | None = None) -> None:
            threads["write"].add(threading.current_thread().name)

        def finish(self) -> None: ...

        def abort(self) -> None: ...

        def interrupt(self) -> None: ...

    summary = FuseSummary()
    run(create_runner(models["lutfuse"], "torch", threads=1), Recorded(pairs), Sink(), summary, progress=False)
    assert summary.done == ["000", "001", "002"] and summary.seconds > 0
    main_thread = threading.current_thread().name
    assert threads["read"] and threads["write"] and main_thread not in threads["read"] | threads["write"]
    assert threads["read"] != threads["write"]


def test_the_runner_decides_which_sizes_pair(tmp_path: Path) -> None:
    """A rig runner warps IR onto the visible camera: the pipeline asks the runner, not a fixed rule."""
    a, _ = synthetic_pair(64, 80)
    _, b = synthetic_pair(48, 64)
    Image.fromarray(a).save(tmp_path / "ir.png")
    Image.fromarray(b).save(tmp_path / "vi.png")
    pair = ImagePair("x", tmp_path / "ir.png", tmp_path / "vi.png")
    (plain,) = FolderSource([pair]).pairs()
    assert plain.error is not None and "ir ir.png is 80x64 but vi vi.png is 64x48" in plain.error
    (rig,) = FolderSource([pair], check=lambda ir, vi: None if ir == (80, 64) else "not the rig's IR size").pairs()
    assert rig.error is None and rig.ir is not None and rig.vi is not None
    assert rig.ir.shape == (64, 80) and rig.vi.shape == (48, 64, 3)


def test_teacher_odd_size_names_the_files_and_no_nan_in_the_summary(tmp_path: Path, models: dict,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    a, b = synthetic_pair(33, 64)
    Image.fromarray(a).save(tmp_path / "ir.png")
    Image.fromarray(b).save(tmp_path / "vi.png")
    args = ("--model", models["teacher"], "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png",
            "--out", tmp_path / "o")
    code, out, err = _main(capsys, *args)
    (line,) = _errors(err)
    assert code == 1 and str(tmp_path / "ir.png") in line and "even height and width" in line
    assert "0 fused, 1 failed" in out and "nan" not in out
    code, out, _ = _main(capsys, *args, "--json")
    summary = json.loads(out)  # strict JSON: no NaN
    assert summary["done"] == 0 and summary["mean_model_ms"] is None


def test_swapped_folders_warn_once_with_counts(tmp_path: Path, models: dict,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    ir.mkdir()
    vi.mkdir()
    for i in range(3):
        a, b = synthetic_pair(seed=i)
        Image.fromarray(b).save(ir / f"{i}.png")  # a colour picture in the IR folder
        Image.fromarray(a).save(vi / f"{i}.png")  # a gray one in the visible folder
    Image.fromarray(synthetic_pair(seed=7)[0]).save(ir / "3.png")  # one pair the right way round
    Image.fromarray(synthetic_pair(seed=7)[1]).save(vi / "3.png")
    code, _, err = _main(capsys, "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert code == 0 and len(warnings) == 1, err
    assert "3 of 4 pairs have a colour IR image and a gray visible one" in warnings[0] and "swapped" in warnings[0]
    gray_rgb = np.stack([synthetic_pair()[0]] * 3, -1)  # IR stored as RGB with equal channels: not colour
    Image.fromarray(gray_rgb).save(ir / "0.png")
    code, _, err = _main(capsys, "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", tmp_path / "p")
    assert code == 0 and "2 of 4 pairs" in err


def test_one_pair_through_the_console_still_reads_as_before(tmp_path: Path, models: dict) -> None:
    a, b = synthetic_pair()
    Image.fromarray(a).save(tmp_path / "ir.png")
    Image.fromarray(b).save(tmp_path / "vi.png")
    proc = run_cli("fuse", "--model", models["student"], "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png",
                   "--out", tmp_path / "f.png", "--tanh-to-8bit", "clip", "--crf", "3")
    assert_one_line_error(proc, "--crf 3 is for videos")
    proc = run_cli("fuse", "--model", models["student"], "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png",
                   "--out", tmp_path / "f.png", "--tanh-to-8bit", "clip")
    assert proc.returncode == 0, proc.stderr
    assert "1 fused, 0 failed" in proc.stdout and "wall time" in proc.stdout
