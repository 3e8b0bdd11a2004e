"""Video in, fused video out: small videos made here, fused with the shipped models; every frame is in
the output at the input's rate, frames pair by time, and bad input is one line with nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image
from video_helpers import audio_only, make_gray16_video, make_video, read_video, scrambled, truncated

from lutfuse_deploy.cli import main
from lutfuse_deploy.errors import InputError
from lutfuse_deploy.fuse.convert import prepare, to_8bit
from lutfuse_deploy.fuse.pairing import Pairing, pair_by_index, pair_by_time
from lutfuse_deploy.fuse.pipeline import VideoOptions, fuse_video
from lutfuse_deploy.fuse.sources import check_streams
from lutfuse_deploy.io.images import normalise_16bit
from lutfuse_deploy.io.video import VideoInfo, decode, ffmpeg_errors, probe
from lutfuse_deploy.paths import pretrained_dir
from lutfuse_deploy.runtime import create_runner

LUT = pretrained_dir() / "lutfuse.safetensors"
MINI = pretrained_dir() / "mini.safetensors"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "ir": make_video(d / "ir.mp4", 6, seed=1),
        "vi": make_video(d / "vi.mp4", 6, seed=2),
        "short": make_video(d / "short.mp4", 4, seed=3),
        "big": make_video(d / "big.mp4", 6, w=80, h=60),
        "fast": make_video(d / "fast.mp4", 18, rate=30, seed=4),
        "mkv": make_video(d / "ir.mkv", 6, seed=1, encoder="mpeg4"),
        "audio": audio_only(d / "audio.mkv"),
    }


def _decoded(path: Path, mode: str) -> list[np.ndarray]:
    with ffmpeg_errors():
        return [img for _, img in decode(probe(path), mode)]


def _fuse(*args: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The console entry point in-process (what `lutfuse-deploy fuse ...` runs), one thread."""
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--threads", "1", *map(str, args)])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _nothing_written(folder: Path, name: str) -> None:
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{Path(name).stem}.")], list(folder.iterdir())


@pytest.mark.parametrize("model", [LUT, MINI], ids=["lutfuse", "mmdrfuse-student"])
def test_every_frame_fused_exactly_as_its_png_would_be(videos: dict[str, Path], tmp_path: Path, model: Path) -> None:
    """Lossless output (FFV1, RGB) so each encoded frame can be compared with an independent fuse of
    the decoded input frames through the image path's preparation."""
    runner = create_runner(model, "torch", threads=1)
    out = tmp_path / "fused.mkv"
    summary = fuse_video(runner, videos["ir"], videos["vi"], out,
                         VideoOptions(encoder="ffv1", pix_fmt="bgr0", save_frames=tmp_path / "png"), progress=False)
    got, rate = read_video(out)
    assert summary.frames == len(got) == 6 and rate == 10
    vi_mode = "RGB" if runner.kind == "lutfuse" else "L"
    with runner:
        for i, (ir, vi) in enumerate(zip(_decoded(videos["ir"], "L"), _decoded(videos["vi"], vi_mode), strict=True)):
            want = to_8bit(runner.infer(*prepare(ir, vi, runner.io))[0], runner.kind, "clip")
            png = np.asarray(Image.open(tmp_path / "png" / f"{i:06d}.png"))
            assert np.array_equal(png, want), i
            assert np.array_equal(got[i], want if want.ndim == 3 else np.repeat(want[..., None], 3, -1)), i
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"{i:06d}.png" for i in range(6)]


def test_cli_mp4_keeps_rate_and_count_and_prints_a_summary(videos: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _fuse("--model", LUT, "--ir", videos["ir"], "--vi", videos["vi"], "--out", tmp_path / "f.mp4",
                           "--crf", 18, "--json", capsys=capsys)
    assert code == 0, err
    summary = json.loads(out)
    got, rate = read_video(tmp_path / "f.mp4")
    assert summary["frames"] == len(got) == 6 and rate == 10 and summary["frame_rate"] == "10"
    assert summary["fps"] > 0 and summary["mean_model_ms"] > 0
    ref = _decoded(videos["vi"], "RGB")[0].astype(np.float64)
    assert np.abs(got[0] - ref).mean() < 60  # a fused frame, not noise or a blank one


def test_onnxruntime_on_the_exported_graph(videos: dict[str, Path], tmp_path: Path,
                                           shipped_lutfuse_onnx: dict[str, Path]) -> None:
    out = tmp_path / "ort.mkv"
    opts = VideoOptions(encoder="ffv1", pix_fmt="bgr0")
    ort = fuse_video(create_runner(shipped_lutfuse_onnx["onnx"], "onnxruntime", threads=1), videos["ir"],
                     videos["vi"], out, opts, progress=False)
    torch_out = tmp_path / "torch.mkv"
    fuse_video(create_runner(LUT, "torch", threads=1), videos["ir"], videos["vi"], torch_out, opts, progress=False)
    (a, _), (b, _) = read_video(out), read_video(torch_out)
    assert ort.frames == len(a) == len(b) == 6
    assert max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(a, b, strict=True)) <= 1  # 8-bit within 1 LSB


def test_different_rates_are_refused_or_paired_by_nearest_time(videos: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _fuse("--model", LUT, "--ir", videos["ir"], "--vi", videos["fast"], "--out", tmp_path / "o.mp4",
                         capsys=capsys)
    assert code == 1 and "10 fps" in err and "30 fps" in err and "--resample-to" in err
    _nothing_written(tmp_path, "o.mp4")
    for lead, n, rate in (("ir", 6, 10), ("vi", 18, 30)):
        out = tmp_path / f"{lead}.mp4"
        code, _, err = _fuse("--model", LUT, "--ir", videos["ir"], "--vi", videos["fast"], "--out", out,
                             "--resample-to", lead, capsys=capsys)
        assert code == 0, err
        got, got_rate = read_video(out)
        assert len(got) == n and got_rate == rate


def test_rates_that_differ_only_by_container_rounding_pair_by_index() -> None:
    def info(rate: Fraction) -> VideoInfo:
        return VideoInfo(Path("x.mp4"), 64, 48, rate, 0, "h264")

    assert check_streams(info(Fraction(30000, 1001)), info(Fraction(2997, 100)), None) == Fraction(30000, 1001)
    with pytest.raises(InputError, match="29.97 fps and x.mp4 25 fps"):
        check_streams(info(Fraction(30000, 1001)), info(Fraction(25)), None)


def test_nearest_time_pairing_picks_the_closest_frame() -> None:
    def stream(n: int, rate: int) -> list[tuple[float, np.ndarray]]:
        return [(i / rate, np.full((2, 2), i)) for i in range(n)]

    ir = stream(6, 10)  # 0 .. 0.5 s, each shown 0.1 s
    stats = Pairing()  # visible ends at 0.433 s: IR frame 5 (0.5 s) has no partner
    pairs = list(pair_by_time(iter(ir), iter(stream(14, 30)), Fraction(10), Fraction(30), stats, lead_is_ir=True))
    assert [(int(a[0, 0]), int(b[0, 0])) for a, b in pairs] == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert (stats.pairs, stats.ir_frames, stats.vi_frames, stats.ir_left, stats.vi_left) == (5, 6, 14, [5], [])
    stats = Pairing()  # visible runs to 0.767 s: its frames from 0.6 s on (18-23) come after the IR ends
    pairs = list(pair_by_time(iter(ir), iter(stream(24, 30)), Fraction(10), Fraction(30), stats, lead_is_ir=True))
    assert [int(b[0, 0]) for _, b in pairs] == [0, 3, 6, 9, 12, 15]
    assert (stats.ir_left, stats.vi_left, stats.vi_frames) == ([], list(range(18, 24)), 24)
    assert stats.leftover(Path("ir.mp4"), Path("vi.mp4")) == (
        "ir.mp4 has 6 frames and vi.mp4 24: fused 6, left frames 18-23 of vi.mp4 unfused")
    stats.rates = (Fraction(10), Fraction(30))  # different rates: the frame counts say nothing, durations do
    assert stats.leftover(Path("ir.mp4"), Path("vi.mp4")) == (
        "ir.mp4 lasts 0.6 s (6 frames at 10 fps) and vi.mp4 0.8 s (24 frames at 30 fps): different durations; "
        "fused 6, left frames 18-23 of vi.mp4 unfused")
    stats = Pairing()
    assert len(list(pair_by_index(iter(ir), iter(stream(14, 30)), stats))) == 6
    assert stats.vi_left == list(range(6, 14)) and stats.ir_left == []


def test_different_lengths_say_what_was_fused_and_what_was_left(videos: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.mp4"
    out.write_bytes(b"an older output")
    code, _, err = _fuse("--model", LUT, "--ir", videos["ir"], "--vi", videos["short"], "--out", out, capsys=capsys)
    assert code == 1
    assert "error: ir.mp4 has 6 frames and short.mp4 4: fused 4, left frames 4-5 of ir.mp4 unfused" in err
    assert out.read_bytes() == b"an older output"  # untouched: the new video never replaced it
    code, _, err = _fuse("--model", LUT, "--ir", videos["ir"], "--vi", videos["short"], "--out", out, "--trim",
                         capsys=capsys)
    assert code == 0 and "note:" in err
    assert len(read_video(out)[0]) == 4


@pytest.mark.parametrize("case,needle", [
    ("truncated_mkv", "corrupt or truncated stream"),
    ("scrambled_mkv", "corrupt"),
    ("truncated_mp4", "cannot read as a video"),
    ("audio", "no video stream (streams: audio)"),
    ("big", "is 64x48 but big.mp4 is 80x60"),
    ("missing", "no such video file"),
    ("image", "--vi must be video files too"),
])
def test_bad_input_is_one_line_and_writes_nothing(videos: dict[str, Path], tmp_path: Path, case: str, needle: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ir = videos["mkv"] if case.endswith("mkv") else videos["ir"]
    vi = {
        "truncated_mkv": lambda: truncated(videos["mkv"], tmp_path / "t.mkv"),
        "scrambled_mkv": lambda: scrambled(videos["mkv"], tmp_path / "s.mkv"),
        "truncated_mp4": lambda: truncated(videos["vi"], tmp_path / "t.mp4", keep=0.5),
        "audio": lambda: videos["audio"],
        "big": lambda: videos["big"],
        "missing": lambda: tmp_path / "nope.mp4",
        "image": lambda: tmp_path / "vi.png",
    }[case]()
    code, _, err = _fuse("--model", LUT, "--ir", ir, "--vi", vi, "--out", tmp_path / "o.mkv", "--save-frames",
                         tmp_path / "frames", capsys=capsys)
    assert code == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], err
    assert len(err.strip().splitlines()) == 1, err  # nothing else: no FFmpeg log lines, no traceback
    _nothing_written(tmp_path, "o.mkv")
    assert not (tmp_path / "frames").exists() or not list((tmp_path / "frames").iterdir())


def test_16_bit_ir_video_is_refused_or_mapped_like_16_bit_images(videos: dict[str, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ir16, raw = make_gray16_video(tmp_path / "thermal.mkv", 6)
    out = tmp_path / "o.mkv"
    code, _, err = _fuse("--model", LUT, "--ir", ir16, "--vi", videos["vi"], "--out", out, capsys=capsys)
    assert code == 1 and "gray16le IR video" in err and "--ir16" in err
    _nothing_written(tmp_path, "o.mkv")
    code, _, err = _fuse("--model", LUT, "--ir", ir16, "--vi", videos["vi"], "--out", out, "--ir16", "percentile",
                         "--encoder", "ffv1", "--pix-fmt", "bgr0", "--backend", "torch", capsys=capsys)  # as below
    assert code == 0, err
    got, _ = read_video(out)
    runner = create_runner(LUT, "torch", threads=1)
    with runner:
        for i, (r, vi) in enumerate(zip(raw, _decoded(videos["vi"], "RGB"), strict=True)):
            want = to_8bit(runner.infer(*prepare(normalise_16bit(r, "percentile"), vi, runner.io))[0], "lutfuse")
            assert np.array_equal(got[i], want), i


def test_truncated_stream_at_the_console_has_no_traceback(videos: dict[str, Path], tmp_path: Path) -> None:
    bad = truncated(videos["mkv"], tmp_path / "t.mkv")
    proc = run_cli("fuse", "--model", LUT, "--ir", videos["mkv"], "--vi", bad, "--out", tmp_path / "o.mp4",
                   "--threads", "1")
    assert_one_line_error(proc, "t.mkv: corrupt or truncated stream")
    _nothing_written(tmp_path, "o.mp4")


def test_encoder_choices_are_checked(videos: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ("--model", LUT, "--ir", videos["ir"], "--vi", videos["vi"], "--out", tmp_path / "o.mp4")
    for extra, needle in ((("--encoder", "nope"), "not an encoder"), (("--encoder", "pcm_s16le"), "not a video one"),
                          (("--encoder", "mpeg4", "--crf", "20"), "--bitrate instead"),
                          (("--bitrate", "fast"), "--bitrate 'fast'")):
        code, _, err = _fuse(*base, *extra, capsys=capsys)
        assert code == 1 and needle in err, (extra, err)
    code, _, err = _fuse(*base, "--encoder", "mpeg4", "--bitrate", "400k", capsys=capsys)
    assert code == 0, err
    assert len(read_video(tmp_path / "o.mp4")[0]) == 6


def test_progress_bar_with_fps_only_on_a_terminal(videos: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _fuse("--model", LUT, "--ir", videos["ir"], "--vi", videos["vi"], "--out", tmp_path / "o.mp4",
                           capsys=capsys)
    assert code == 0 and "frame/s" not in err and "6 frames fused" in out and " fps)" in out
    import fcntl
    import struct
    import termios

    primary, replica = os.openpty()  # stderr on a terminal: the bar is drawn, with frames per second
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "lutfuse_deploy", "fuse", "--model", str(LUT), "--threads", "1",
                             "--ir", str(videos["ir"]), "--vi", str(videos["vi"]), "--out", str(tmp_path / "t.mp4")],
                            stdout=subprocess.DEVNULL, stderr=replica)
    os.close(replica)
    tty = b""
    while True:  # read while it runs: a closed terminal's unread output is lost
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    os.close(primary)
    assert proc.wait(timeout=300) == 0, tty
    assert b"frame/s" in tty, tty


def test_profile_reads_a_video_as_its_frame_source(videos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--model", str(LUT), "--backend", "torch", "--video", str(videos["ir"]), str(videos["vi"]),
              "--resolutions", "64x48", "--iters", "1", "--warmup", "0", "--threads", "1"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    assert "first frames of" in " ".join(out.split()) and "ir.mp4" in out
    with pytest.raises(InputError, match="no video stream"):
        from lutfuse_deploy.profile.inputs import InputSource

        InputSource(video=(str(videos["ir"]), str(videos["audio"])))
