"""The fuse pipeline's guards and conventions at both sides of each boundary: 8-bit conversion (ties,
min-max, clip), batch layout, output planning, the video path's "output is an input" refusal, frame
rate and size checks, nearest-in-time pairing on streams that do not line up, --trim, 16-bit IR
video and bit rates. Fake runners; small videos made here (PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from profile_fakes import FakeRunner
from video_helpers import make_gray16_video, make_video, read_video

from lutfuse_deploy.errors import InputError, OutputError
from lutfuse_deploy.fuse.convert import prepare, to_8bit
from lutfuse_deploy.fuse.pairing import Pairing, pair_by_index, pair_by_time
from lutfuse_deploy.fuse.pipeline import VideoOptions, fuse_pairs, fuse_video
from lutfuse_deploy.fuse.plan import is_video_run as video_run
from lutfuse_deploy.fuse.sinks import plan_outputs
from lutfuse_deploy.fuse.sources import check_streams
from lutfuse_deploy.io.images import ImagePair, normalise_16bit
from lutfuse_deploy.io.video import VideoInfo, VideoWriter, decode, ffmpeg_errors, parse_bitrate, probe

pytest.importorskip("av", reason="the video extra (PyAV) is not installed")


# -- 8-bit conversion and batch layout -------------------------------------------------------------
def test_lutfuse_to_8bit_rounds_half_to_even():
    # k + 0.5 over 255 for k = 2, 3 (exact in float64 for these k): 2.5 -> 2, 3.5 -> 4; 0.75 -> 1
    x = np.array([2.5, 3.5, 0.75, 254.6, 300.0, -3.0]) / 255.0
    assert (x * 255.0)[:2].tolist() == [2.5, 3.5]
    got = to_8bit(x.reshape(1, 1, 6).repeat(3, axis=0), "lutfuse")
    assert got.shape == (1, 6, 3) and got.dtype == np.uint8
    assert got[0, :, 0].tolist() == [2, 4, 1, 255, 255, 0]


def test_mmdrfuse_tanh_minmax_stretches_the_range_and_clip_keeps_the_scale():
    t = np.array([[[-0.5, 0.0, 0.5]]])
    assert to_8bit(t, "mmdrfuse-student", "minmax").tolist() == [[0, 128, 255]]  # 127.5 -> 128
    assert to_8bit(t, "mmdrfuse-student", "clip").tolist() == [[0, 0, 128]]  # 0.5 * 255 = 127.5 -> 128
    assert to_8bit(np.full((1, 2, 2), 0.3), "mmdrfuse-student", "minmax").tolist() == [[0, 0], [0, 0]]
    with pytest.raises(InputError, match="unknown tanh mapping"):
        to_8bit(t, "mmdrfuse-student", "gamma")


@pytest.mark.parametrize("io", ["float", "uint8"])
def test_prepare_keeps_values_in_nchw(io):
    ir = np.arange(6, dtype=np.uint8).reshape(2, 3)
    vi = np.stack([ir, ir + 10, ir + 20], axis=-1)
    t_ir, t_vi = prepare(ir, vi, io)
    assert t_ir.shape == (1, 1, 2, 3) and t_vi.shape == (1, 3, 2, 3)
    assert t_vi.dtype == (np.uint8 if io == "uint8" else np.float32)
    for c in range(3):
        np.testing.assert_array_equal(t_vi[0, c], ir + 10 * c)
    _, t_gray = prepare(ir, ir + 5, io)
    assert t_gray.shape == (1, 1, 2, 3) and t_gray[0, 0].tolist() == (ir + 5).tolist()


def test_a_png_name_takes_exactly_one_pair(tmp_path):
    one = [ImagePair("a", tmp_path / "a_ir.png", tmp_path / "a_vi.png")]
    two = [*one, ImagePair("b", tmp_path / "b_ir.png", tmp_path / "b_vi.png")]
    assert plan_outputs(one, tmp_path / "x.png") == [(tmp_path / "x.png", None)]
    with pytest.raises(OutputError, match="a file name takes one pair, these are 2"):
        plan_outputs(two, tmp_path / "x.png")
    assert [p for p, _ in plan_outputs(two, tmp_path / "out")] == [tmp_path / "out" / "a.png", tmp_path / "out" / "b.png"]


def _plan(pairs, out, save_float=False):
    """A fuse plan for ``pairs`` written to the folder ``out``."""
    from lutfuse_deploy.fuse.plan import PairsPlan

    targets = {p.name: t for p, t in zip(pairs, plan_outputs(pairs, out, save_float))}
    return PairsPlan(out, list(pairs), targets)


def test_save_float_refused_for_a_uint8_model(tmp_path):
    pair = ImagePair("a", tmp_path / "ir.png", tmp_path / "vi.png")
    with pytest.raises(InputError, match="--save-float needs a float-io model"):
        fuse_pairs(FakeRunner(io="uint8"), _plan([pair], tmp_path / "out", True), save_float=True, progress=False)
    assert not (tmp_path / "out").exists()


def test_folder_pairs_below_3x3_or_of_two_sizes_are_reported_and_skipped(tmp_path):
    from PIL import Image

    sizes = {"ok": ((3, 3), (3, 3)), "small": ((2, 3), (2, 3)), "thin": ((3, 2), (3, 2)),
             "taller": ((3, 3), (4, 3)), "wider": ((3, 3), (3, 4))}
    pairs = []
    for name, (ir_hw, vi_hw) in sizes.items():
        ir, vi = tmp_path / f"{name}_ir.png", tmp_path / f"{name}_vi.png"
        Image.fromarray(np.full(ir_hw, 50, np.uint8)).save(ir)
        Image.fromarray(np.full((*vi_hw, 3), 90, np.uint8)).save(vi)
        pairs.append(ImagePair(name, ir, vi))
    summary = fuse_pairs(FakeRunner(), _plan(pairs, tmp_path / "out"), progress=False)
    assert summary.done == ["ok"]
    assert [e.split(":")[0] for e in summary.failed] == ["small", "thin", "taller", "wider"]
    assert all("smaller than 3x3" in e for e in summary.failed[:2])
    assert all("size mismatch" in e for e in summary.failed[2:])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.png"]


# -- video: checks before any frame is decoded ------------------------------------------------------
def _info(rate, w=64, h=48, name="x.mp4"):
    return VideoInfo(Path(name), w, h, rate, 0, "h264")


@pytest.mark.parametrize(("vi_rate", "ok"), [(Fraction(25025, 1000), True), (Fraction(24975, 1000), True),
                                             (Fraction(25026, 1000), False), (Fraction(2503, 100), False)])
def test_frame_rates_within_a_thousandth_pair_by_index(vi_rate, ok):
    if ok:
        assert check_streams(_info(Fraction(25)), _info(vi_rate, name="v.mp4"), None) == 25
    else:
        with pytest.raises(InputError, match="--resample-to"):
            check_streams(_info(Fraction(25)), _info(vi_rate, name="v.mp4"), None)


def test_pairing_by_time_needs_both_rates():
    with pytest.raises(InputError, match="v.mp4: the container gives no frame rate to pair by time"):
        check_streams(_info(Fraction(10)), _info(None, name="v.mp4"), "ir")
    with pytest.raises(InputError, match="x.mp4: the container gives no frame rate to pair by time"):
        check_streams(_info(None), _info(Fraction(10), name="v.mp4"), "vi")
    assert check_streams(_info(None), _info(Fraction(10), name="v.mp4"), None) == 10  # by index: one rate is enough
    with pytest.raises(InputError, match="gives no frame rate"):
        check_streams(_info(None), _info(None, name="v.mp4"), None)


@pytest.mark.parametrize(("w", "h", "fmt"), [(64, 48, "yuv420p"), (64, 47, "yuv444p"), (63, 48, "yuv444p")])
def test_odd_frame_sizes_get_a_full_chroma_pixel_format(tmp_path, w, h, fmt):
    writer = VideoWriter(tmp_path / "o.mp4", Fraction(10), w, h, "libx264")
    try:
        assert writer.stream.pix_fmt == fmt
    finally:
        writer.abort()


@pytest.mark.parametrize("wh", [(64, 50), (66, 48)])
def test_streams_of_another_size_refused(wh):
    with pytest.raises(InputError, match="IR and visible must have the same size"):
        check_streams(_info(Fraction(10)), _info(Fraction(10), *wh), "ir")


def test_mixing_a_video_with_images_refused(tmp_path):
    for ir, vi, out in (("a.mp4", "b.png", "c.mp4"), ("a.png", "b.mp4", "c.mp4"), ("a.mp4", "b.mp4", "c.png")):
        with pytest.raises(InputError, match="must be video files too"):
            video_run(tmp_path / ir, tmp_path / vi, tmp_path / out)
    assert video_run(tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c") is False


@pytest.mark.parametrize(("text", "bps"), [("4M", 4_000_000), ("800k", 800_000), ("2500000", 2_500_000), ("1.5m", 1_500_000)])
def test_bitrate_units_are_decimal(text, bps):
    assert parse_bitrate(text) == bps


@pytest.mark.parametrize("text", ["0", "-1M", "fast"])
def test_bad_bitrate_refused(text):
    with pytest.raises(InputError, match="--bitrate"):
        parse_bitrate(text)


# -- video: pairing on streams that do not line up --------------------------------------------------
def _stream(times):
    return [(t, np.full((1, 1), i)) for i, t in enumerate(times)]


def test_pairing_by_time_takes_the_nearest_not_the_previous_frame():
    lead = _stream([0.0, 0.1, 0.2, 0.3])
    other = _stream([0.0, 0.09, 0.19, 0.31])  # 0.31 is nearer 0.3 than 0.19 is
    stats = Pairing()
    pairs = list(pair_by_time(iter(lead), iter(other), Fraction(10), Fraction(10), stats, lead_is_ir=True))
    assert [(int(a[0, 0]), int(b[0, 0])) for a, b in pairs] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert (stats.ir_left, stats.vi_left) == ([], [])


def test_a_lead_frame_a_whole_period_from_every_other_frame_is_left():
    lead = _stream([0.0, 0.099, 0.25])  # 0.099 is under one period (0.1 s) from 0.0; 0.25 is 0.15 from 0.1
    other = _stream([0.0, 0.1])
    stats = Pairing()
    pairs = list(pair_by_time(iter(lead), iter(other), Fraction(4), Fraction(10), stats, lead_is_ir=False))
    assert [(int(a[0, 0]), int(b[0, 0])) for a, b in pairs] == [(0, 0), (1, 1)]  # (ir, vi): other is IR
    assert (stats.vi_left, stats.ir_left, stats.pairs) == ([2], [], 2)


def test_pairing_by_index_reports_either_streams_tail():
    stats = Pairing()
    assert len(list(pair_by_index(iter(_stream([0, 1])), iter(_stream([0, 1, 2, 3])), stats))) == 2
    assert (stats.ir_left, stats.vi_left, stats.vi_frames) == ([], [2, 3], 4)
    stats = Pairing()
    assert len(list(pair_by_index(iter(_stream([0, 1, 2])), iter(_stream([0])), stats))) == 1
    assert (stats.ir_left, stats.vi_left, stats.ir_frames) == ([1, 2], [], 3)


# -- video: whole runs with a fake model ------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {"ir": make_video(d / "ir.mp4", 3, seed=1), "vi": make_video(d / "vi.mp4", 3, seed=2),
            "short": make_video(d / "short.mp4", 2, seed=3)}


@pytest.mark.parametrize("which", ["ir", "vi"])
def test_video_output_that_is_an_input_refused_and_the_input_kept(clips, which):
    before = clips[which].read_bytes()
    for out in (clips[which], clips[which].parent / "." / clips[which].name):
        with pytest.raises(InputError, match="is one of the inputs"):
            fuse_video(FakeRunner(), clips["ir"], clips["vi"], out, progress=False)
    assert clips[which].read_bytes() == before


def test_different_lengths_need_trim(clips, tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(InputError, match="left frame 2 of ir.mp4 unfused; nothing written"):
        fuse_video(FakeRunner(), clips["ir"], clips["short"], out, progress=False)
    assert not out.exists()
    summary = fuse_video(FakeRunner(), clips["ir"], clips["short"], out, VideoOptions(trim=True), progress=False)
    assert summary.frames == 2 and len(read_video(out)[0]) == 2


def test_16_bit_ir_video_refused_or_mapped(tmp_path):
    path, raw = make_gray16_video(tmp_path / "thermal.mkv", 2)
    info = probe(path)
    with pytest.raises(InputError, match="gray16le IR video"), ffmpeg_errors():
        list(decode(info, "L", "refuse"))
    with ffmpeg_errors():
        got = [img for _, img in decode(info, "L", "linear")]
    for g, r in zip(got, raw, strict=True):
        np.testing.assert_array_equal(g, normalise_16bit(r, "linear"))


@pytest.mark.parametrize("which", ["ir", "vi"])
def test_fuse_command_refuses_to_write_a_video_over_its_input(clips, which, capsys, monkeypatch):
    """The data-loss case itself: `fuse --ir ir.mp4 --vi vi.mp4 --out ir.mp4` (and through ./); the
    model is a fake, so the test measures the command's routing and refusal, not a model load."""
    from lutfuse_deploy.cli import fuse as fuse_cli
    from lutfuse_deploy.cli import main
    from lutfuse_deploy.paths import pretrained_dir

    monkeypatch.setattr(fuse_cli, "make_runner", lambda *args, **kwargs: FakeRunner())
    before = clips[which].read_bytes()
    for out in (clips[which], clips[which].parent / "." / clips[which].name):
        with pytest.raises(SystemExit) as exc:
            main(["fuse", "--model", str(pretrained_dir() / "mini.safetensors"), "--threads", "1", "--ir",
                  str(clips["ir"]), "--vi", str(clips["vi"]), "--out", str(out)])
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.startswith("error: --out") and "is one of the inputs" in err, err
        assert "Traceback" not in err
    assert clips[which].read_bytes() == before
