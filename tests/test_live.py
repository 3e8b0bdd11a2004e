"""Live cameras: real UDP MPEG-TS streams on 127.0.0.1 from PyAV senders at different rates and sizes
(30 fps 160x128 IR, 25 fps 192x144 visible, through a rig), whose frames carry their index, so the
pairs can be checked against the senders' own schedule. Every sender stops by itself within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from live_helpers import free_udp_port, read_index, start_receiver, start_sender
from PIL import Image
from video_helpers import make_video, read_video

from lutfuse_deploy.cli import main
from lutfuse_deploy.errors import InputError
from lutfuse_deploy.fuse.cameras import LiveFrame, StreamClock, open_options
from lutfuse_deploy.fuse.live import LiveOptions, LiveSource
from lutfuse_deploy.fuse.live_run import fuse_live
from lutfuse_deploy.fuse.pairing import newest_match, pairable
from lutfuse_deploy.fuse.stats import Timing
from lutfuse_deploy.paths import pretrained_dir
from lutfuse_deploy.runtime import create_runner

MINI = pretrained_dir() / "mini.safetensors"
IR_RATE, VI_RATE, IR_SIZE, VI_SIZE = 30, 25, "160x128", "192x144"
RIG = """format: lutfuse-deploy/rig-v1
ir_size: [160, 128]
vi_size: [192, 144]
homography: [[1.2, 0.0, 0.0], [0.0, 1.125, 0.0], [0.0, 0.0, 1.0]]
output: visible
"""
SLACK = 0.008  # seconds: the two senders' own scheduling and the clock mapping's error


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rig") / "rig.yaml"
    path.write_text(RIG)
    return path


@pytest.fixture(scope="module")
def runner(rig: Path):  # noqa: ANN201 - a torch runner behind the rig's warp
    return create_runner(MINI, "torch", threads=1, rig=rig)


class Cameras:
    """Two senders on free ports sharing one schedule; killed at the end of the test."""

    def __init__(self, seconds: float = 8.0, vi_change: tuple[int, str] | None = None, ir_delay: float = 0.0) -> None:
        """``ir_delay``: the IR camera sends each frame this many seconds after the visible one captured
        with it (its timestamps run late by that much, as a thermal core's readout makes them)."""
        self.ir_port, self.vi_port = free_udp_port(), free_udp_port()
        self.start_at = time.time() + 0.5
        self.seconds = seconds
        self.ir = start_sender(self.ir_port, IR_RATE, IR_SIZE, seconds, self.start_at + ir_delay)
        self.vi = start_sender(self.vi_port, VI_RATE, VI_SIZE, seconds, self.start_at, vi_change)

    @property
    def urls(self) -> tuple[str, str]:
        return f"udp://127.0.0.1:{self.ir_port}", f"udp://127.0.0.1:{self.vi_port}"

    def restart_vi(self, seconds: float) -> None:
        """A new sender on the visible port, on the same schedule (a camera that came back)."""
        self.vi.kill()
        self.vi.wait()
        self.vi = start_sender(self.vi_port, VI_RATE, VI_SIZE, seconds + time.time() - self.start_at, self.start_at)

    def close(self) -> None:
        for p in (self.ir, self.vi):
            p.kill()
            p.wait()


@pytest.fixture()
def cameras():  # noqa: ANN201
    made: list[Cameras] = []

    def make(**kw: object) -> Cameras:
        made.append(Cameras(**kw))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for c in made:
        c.close()


def _frames(path: Path) -> list[np.ndarray]:
    return read_video(path)[0]


def _recording(folder: Path) -> bool:
    """Fused frames are being encoded: the hidden temporary output has grown past its header."""
    return any(p.stat().st_size > 2000 for p in folder.glob(".live.*"))


def when_recording(folder: Path, action: Callable[[], None], timeout: float = 30.0) -> threading.Thread:
    """Run ``action`` on a thread once frames are being recorded into ``folder``."""

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while not _recording(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        action()

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    return t


# --- pairing, the clock and the statistics without streams ---------------------------------------

def test_newest_match_takes_the_newest_pair_within_tolerance() -> None:
    ir = [0.0, 0.033, 0.067, 0.100]
    vi = [0.0, 0.040, 0.080]
    assert newest_match(ir, vi, 0.015) == (2, 2)  # 0.067 with 0.080: the newest older-of-two capture
    assert newest_match(ir, vi, 0.015, oldest=True) == (0, 0)
    assert newest_match(ir, vi, 0.02) == (3, 2)  # 0.100 with 0.080 is just within 20 ms
    assert newest_match([0.0], [0.5], 0.02) is None
    # a runner that kept up would have fused (0,0), (1,1) and (2,2) before (3,?) : those frames were late
    assert pairable(ir[:3], vi[:3], 0.015) == ({0, 1, 2}, {0, 1, 2})
    assert pairable([0.0, 0.2], [0.1], 0.02) == (set(), set())


def test_stream_clock_ignores_arrival_jitter_and_follows_a_jump() -> None:
    clock = StreamClock()
    rng = np.random.default_rng(0)
    arrivals = [100.0 + i / 25 + 0.005 + rng.uniform(0, 0.05) for i in range(50)]
    for i, a in enumerate(arrivals):
        clock.see(i / 25, a)
    assert clock.offset is not None
    # the smallest delay seen: later frames' capture times are their pts on a steady host clock
    assert 100.005 <= clock.offset <= 100.005 + 0.01
    frame = LiveFrame(0, 49 / 25, arrivals[-1], np.zeros((1, 1), np.uint8))
    assert clock.time(frame) == pytest.approx(49 / 25 + clock.offset)
    clock.see(1000.0, 500.0)  # a restarted sender: the clock re-anchors instead of waiting for a smaller delay
    assert clock.offset == pytest.approx(-500.0)


def test_timing_percentiles_stay_within_one_percent_in_constant_memory() -> None:
    t = Timing()
    x = np.random.default_rng(1).lognormal(2, 1, 5000)
    for v in x:
        t.add(float(v))
    for q in (50, 95):
        assert np.percentile(x, q) <= t.percentile(q) <= np.percentile(x, q) * 1.011
    assert t.mean == pytest.approx(x.mean())


def test_scheme_defaults_and_user_options() -> None:
    assert open_options("rtsp://127.0.0.1/cam", {})[1]["rtsp_transport"] == "tcp"
    assert open_options("rtsp://127.0.0.1/cam", {"rtsp_transport": "udp"})[1]["rtsp_transport"] == "udp"
    fmt, opts = open_options("/dev/video0", {"video_size": "640x512", "framerate": "30"})
    assert fmt == "v4l2" and opts == {"video_size": "640x512", "framerate": "30"}
    assert open_options("udp://127.0.0.1:5000", {})[1]["overrun_nonfatal"] == "1"


# --- real streams ---------------------------------------------------------------------------------

def test_pairs_are_captured_together_and_every_frame_is_accounted_for(cameras) -> None:  # noqa: ANN001
    cams = cameras(seconds=6)
    source = LiveSource(*cams.urls, "L", check=lambda a, b: None, options=LiveOptions(duration=3.0))
    seen: list[tuple[int, int]] = []
    for pair in source.pairs():
        assert pair.ir is not None and pair.vi is not None and pair.t is not None
        assert pair.ir.shape == (128, 160) and pair.vi.shape == (144, 192)
        seen.append((read_index(pair.ir), read_index(pair.vi)))
    tol = source.tolerance
    assert tol == pytest.approx(0.5 / VI_RATE)  # half the slower camera's period
    assert source.stopped_by == "duration" and source.failure is None
    assert len(seen) >= 2 * VI_RATE  # 3 s at 25 fps, less what a loaded machine skipped
    # each pair against the senders' schedule: the frames were sent within the tolerance of each other
    offsets = [abs(i / IR_RATE - j / VI_RATE) for i, j in seen]
    assert max(offsets) <= tol + SLACK, sorted(offsets)[-5:]
    # frames are fused once, in order, and the indices read from pixels match what the source logged
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(seen, seen[1:]))
    assert [(i, j) for i, j, _ in source.pair_log] == [
        (i - seen[0][0] + source.pair_log[0][0], j - seen[0][1] + source.pair_log[0][1]) for i, j in seen]
    for cam in (source.ir, source.vi):
        assert cam.paired == len(seen)
        assert cam.received == cam.paired + cam.unmatched + cam.late + cam.before_start + len(cam.frames)
    # at 30 and 25 fps, about one IR frame in six has no partner; the visible camera loses none to that
    assert source.ir.unmatched >= len(seen) // 10
    assert source.vi.unmatched <= len(seen) // 10  # a few where a starved CPU spread the arrivals


def _pair_offsets(cams, options: LiveOptions) -> list[float]:  # noqa: ANN001
    """|capture-time difference| by the senders' schedule of each pair a source makes."""
    source = LiveSource(*cams.urls, "L", check=lambda a, b: None, options=options)
    seen = [(read_index(p.ir), read_index(p.vi)) for p in source.pairs() if p.ir is not None and p.vi is not None]
    assert len(seen) >= VI_RATE
    return [abs(i / IR_RATE - j / VI_RATE) for i, j in seen]


def test_sync_offset_pairs_a_late_camera_with_the_frames_captured_with_it(cameras) -> None:  # noqa: ANN001
    """An IR camera whose frames come 100 ms after the visible ones captured with them: paired by
    timestamp alone the pairs are ~100 ms apart; with --sync-offset 100 they are within the tolerance."""
    cams = cameras(seconds=7, ir_delay=0.1)
    tol = 0.5 / VI_RATE
    plain = _pair_offsets(cams, LiveOptions(duration=1.5))
    assert sorted(plain)[len(plain) // 2] > 0.1 - tol - SLACK  # the median pair is off by about the delay
    fixed = _pair_offsets(cams, LiveOptions(duration=1.5, sync_offset_ms=100.0))
    assert max(fixed) <= tol + SLACK, sorted(fixed)[-5:]


def test_live_run_writes_a_playable_video_of_the_rig_output(cameras, runner, tmp_path: Path) -> None:  # noqa: ANN001
    cams = cameras(seconds=6)
    out = tmp_path / "live.mp4"
    summary = fuse_live(runner, *cams.urls, str(out), LiveOptions(duration=2.0), progress=False)
    frames = _frames(out)
    assert len(frames) == summary.frames >= VI_RATE
    assert frames[0].shape[:2] == (144, 192)  # the rig's output: the visible camera's geometry
    d = summary.to_dict()
    assert d["stopped_by"] == "duration" and d["failure"] is None
    lat = d["latency"]
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["max_ms"] + 1e-9 and lat["count"] == summary.frames
    assert d["cameras"]["vi"]["paired"] == summary.frames
    assert summary.model.count == summary.encode.count == summary.frames


def test_a_slow_runner_skips_to_the_newest_pair_instead_of_queueing(cameras, runner, tmp_path: Path,  # noqa: ANN001
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that takes 150 ms a pair beside 25 fps cameras: most frames are dropped as late, and
    each fused pair is the newest one, so the latency stays bounded instead of growing with a queue."""
    cams = cameras(seconds=30)
    infer = runner.infer

    def slow(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        time.sleep(0.15)
        return infer(ir, vi)

    monkeypatch.setattr(runner, "infer", slow)
    summary = fuse_live(runner, *cams.urls, str(tmp_path / "live.mp4"), LiveOptions(duration=3.0), progress=False)
    assert 3 <= summary.frames <= 3 / 0.15 + 1
    assert summary.cameras["vi"]["late"] >= summary.frames  # at least one frame skipped per fused one
    # no frame older than a second (max_age_s) is taken, and the pair taken is the newest: it waited
    # about the MPEG-TS framing delay (80 ms) and part of a frame period, where the oldest of 8 kept
    # frames would have waited 320 ms more
    waited = summary.latency.percentile(50) - summary.model.percentile(50) - summary.encode.percentile(50)
    assert waited < 250 and summary.latency.worst < 1000 + summary.model.worst + summary.encode.worst, \
        summary.to_dict()


def test_stream_output_is_readable_by_a_receiver(cameras, runner) -> None:  # noqa: ANN001
    import av

    cams = cameras(seconds=7)
    port = free_udp_port()
    got: list[tuple[int, int]] = []

    def receive() -> None:
        with av.open(f"udp://127.0.0.1:{port}", timeout=(8, 2)) as c:
            try:
                for f in c.decode(video=0):
                    got.append((f.width, f.height))
            except av.error.ExitError:
                pass

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    summary = fuse_live(runner, *cams.urls, f"udp://127.0.0.1:{port}", LiveOptions(duration=3.0), progress=False)
    t.join(15)
    assert summary.frames > 0
    assert got and set(got) == {(192, 144)}  # a receiver joining late starts at a key frame (one a second)


@pytest.mark.parametrize("scheme", ["rtp", "rtsp"])
def test_rtp_and_rtsp_outputs_reach_a_receiver(cameras, runner, scheme: str) -> None:  # noqa: ANN001
    """rtp:// sends MPEG-TS over RTP; rtsp:// pushes (ANNOUNCE/RECORD) to a server, here FFmpeg's own RTSP
    demuxer listening on 127.0.0.1 in another process, which stands in for a media server."""
    cams = cameras(seconds=7)
    port = free_udp_port()
    url = f"{scheme}://127.0.0.1:{port}" + ("/fused" if scheme == "rtsp" else "")
    receiver = start_receiver(url, 12)
    try:
        time.sleep(1.0)  # the RTSP receiver listens before the run connects
        summary = fuse_live(runner, *cams.urls, url, LiveOptions(duration=2.5), progress=False)
        out, err = receiver.communicate(timeout=20)
    finally:
        receiver.kill()
    got = out.split()
    assert summary.frames > 0
    assert len(got) >= summary.frames // 3 and set(got) == {"192x144"}, (len(got), summary.frames, err[-500:])


def test_warm_up_runs_the_model_once_at_the_cameras_sizes(runner, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Before the cameras open, one inference at the rig's camera sizes (the first call is the slow one);
    a runner that refuses the black frames is left cold instead of ending the run."""
    from lutfuse_deploy.fuse.live_run import warm_up

    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    infer = runner.infer

    def record(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        shapes.append((ir.shape, vi.shape))
        return infer(ir, vi)

    monkeypatch.setattr(runner, "infer", record)
    warm_up(runner)
    assert shapes == [((1, 1, 128, 160), (1, 1, 144, 192))]

    def refuse(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        raise InputError("outside this engine's profile")

    monkeypatch.setattr(runner, "infer", refuse)
    warm_up(runner)  # no error


def test_frames_output_writes_one_png_per_pair_with_capture_times(cameras, runner, tmp_path: Path) -> None:  # noqa: ANN001
    cams = cameras(seconds=6)
    out = tmp_path / "frames"
    summary = fuse_live(runner, *cams.urls, str(out), LiveOptions(duration=2.0), progress=False)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == summary.frames >= VI_RATE
    assert [p.name for p in pngs] == [f"{k:06d}.png" for k in range(summary.frames)]
    assert np.asarray(Image.open(pngs[0])).shape == (144, 192)  # the student's gray, in the rig's output
    rows = (out / "frames.csv").read_text().splitlines()
    assert rows[0] == "file,capture_s" and len(rows) == summary.frames + 1
    times = [float(r.split(",")[1]) for r in rows[1:]]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(summary.frames / VI_RATE, abs=0.5)  # the visible camera's pace


def test_size_change_mid_run_is_refused_and_the_recording_kept(cameras, runner, tmp_path: Path) -> None:  # noqa: ANN001
    cams = cameras(seconds=6, vi_change=(VI_RATE * 2, "96x72"))
    out = tmp_path / "live.mkv"
    with pytest.raises(InputError, match=r"visible camera .*frame size changed from 192x144 to 96x72"):
        fuse_live(runner, *cams.urls, str(out), LiveOptions(duration=5.0), progress=False)
    assert len(_frames(out)) > 0


def test_a_camera_that_stays_gone_ends_the_run_with_the_recording_playable(cameras, runner,  # noqa: ANN001
                                                                              tmp_path: Path) -> None:
    cams = cameras(seconds=30)
    out = tmp_path / "live.mp4"
    killed: list[float] = []
    when_recording(tmp_path, lambda: (cams.vi.kill(), killed.append(time.monotonic())))
    with pytest.raises(InputError, match=r"visible camera udp://127.0.0.1:\d+: no (data for 0.5 s|stream within 2 s "
                                         r"of opening); gave up after 1 reconnect attempts; the \d+ frames fused before "
                                         r"are in"):
        fuse_live(runner, *cams.urls, str(out), LiveOptions(reconnect=1, stall_s=0.5, open_s=2.0), progress=False)
    assert time.monotonic() - killed[0] < 7  # 0.5 s stall, 0.5 s back-off, 2 s to reopen, and the finalizing
    assert len(_frames(out)) > 0


def test_reconnect_picks_up_a_camera_that_comes_back(cameras) -> None:  # noqa: ANN001
    """The visible sender is killed after 20 pairs and a new one starts on its port a second later:
    the camera is reopened and pairing goes on past the gap, captured together as before."""
    cams = cameras(seconds=30)
    source = LiveSource(*cams.urls, "L", check=lambda a, b: None,
                        options=LiveOptions(duration=12.0, reconnect=3, stall_s=0.5))
    seen: list[tuple[int, int]] = []
    for pair in source.pairs():
        assert pair.ir is not None and pair.vi is not None
        seen.append((read_index(pair.ir), read_index(pair.vi)))
        if len(seen) == 20:
            cams.vi.kill()
            threading.Timer(1.0, cams.restart_vi, kwargs={"seconds": 30}).start()
        if len(seen) == 40:
            source.stop("enough")
    assert source.failure is None and source.stopped_by == "enough", source.failure
    assert source.vi.reconnects >= 1
    gap = max(b[1] - a[1] for a, b in zip(seen, seen[1:]))
    assert gap >= VI_RATE  # the outage: a second or more of the visible stream never came
    assert max(abs(i / IR_RATE - j / VI_RATE) for i, j in seen[20:]) <= source.tolerance + SLACK


def test_ctrl_c_finalizes_the_recording(cameras, rig: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """The command as a user runs it, in its own process: Ctrl-C (SIGINT) ends the run, the summary is
    printed and the recording is complete; the exit status says it was interrupted."""
    sig, code = signal.SIGINT, 130
    cams = cameras(seconds=60)  # a subprocess takes its time to start on a busy machine; killed at the end
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "lutfuse_deploy", "fuse", "--model", str(MINI), "--backend", "torch",
                             "--threads", "1",
                             "--ir", cams.urls[0], "--vi", cams.urls[1], "--out", str(out), "--rig", str(rig),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _recording(tmp_path):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == signal.Signals(sig).name
    assert len(_frames(out)) == summary["frames"] > 0
    assert not list(tmp_path.glob(".live.*"))


def test_sigterm_finalizes_the_recording(cameras, rig: Path, tmp_path: Path,  # noqa: ANN001
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM (a service manager stopping the recorder) to this process while ``fuse`` runs in it."""
    cams = cameras(seconds=30)
    out = tmp_path / "live.mkv"
    when_recording(tmp_path, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--model", str(MINI), "--backend", "torch", "--threads", "1", "--ir", cams.urls[0],
              "--vi", cams.urls[1],
              "--out", str(out), "--rig", str(rig), "--json", "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert exc.value.code == 143, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "SIGTERM"
    assert len(_frames(out)) == summary["frames"] > 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only


@pytest.mark.parametrize("clock", ["stream", "arrival"])
def test_files_play_as_cameras_until_the_end_of_input(tmp_path: Path, rig: Path, clock: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--live: files paced at their own rates (30 and 25 fps) stand in for cameras; the end of the
    shorter one ends the run normally, with the recording finalized. Either clock pairs them."""
    ir = make_video(tmp_path / "ir.mp4", 45, w=160, h=128, rate=IR_RATE, seed=1)
    vi = make_video(tmp_path / "vi.mp4", 38, w=192, h=144, rate=VI_RATE, seed=2)
    out = tmp_path / "live.mkv"
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--model", str(MINI), "--backend", "torch", "--threads", "1", "--ir", str(ir), "--vi", str(vi),
              "--out", str(out),
              "--rig", str(rig), "--live", "--clock", clock, "--json", "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert exc.value.code == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "end of input" and summary["failure"] is None
    assert summary["cameras"]["vi"]["received"] == 38
    assert 30 <= summary["frames"] == len(_frames(out)) <= 38  # a loaded machine may skip a few as late


def test_profile_live_times_the_stages_and_keeps_nothing(cameras, rig: Path, tmp_path: Path,  # noqa: ANN001
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cams = cameras(seconds=30)
    report = tmp_path / "live.json"
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--model", str(MINI), "--backend", "torch", "--threads", "1", "--rig", str(rig),
              "--live", *cams.urls, "--duration", "2", "--json", str(report)])
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    doc = json.loads(report.read_text())
    assert doc["frames"] > 0 and doc["stopped_by"] == "duration" and doc["backend"] == "torch"
    assert doc["latency"]["p50_ms"] <= doc["latency"]["p95_ms"]
    assert "warp+fuse" in out and "capture->out" in out
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--model", str(MINI), "--live", *cams.urls, "--iters", "5"])
    assert exc.value.code == 1 and "--iters: for still-frame profiles, not --live" in capsys.readouterr().err


def test_refusals_are_one_line(rig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def fuse(*args: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["fuse", "--model", str(MINI), "--backend", "torch", "--threads", "1", *args])
        assert exc.value.code == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("error:"), err
        return err

    ir = tmp_path / "ir"
    ir.mkdir()
    assert "--duration: for live cameras only" in fuse("--ir", str(ir), "--vi", str(ir), "--out", str(tmp_path / "o"),
                                                       "--duration", "3")
    assert "no srt protocol" in fuse("--ir", "srt://127.0.0.1:9", "--vi", "srt://127.0.0.1:9",
                                     "--out", str(tmp_path / "o.mp4"))
    assert "a live run writes a video file" in fuse("--ir", "udp://127.0.0.1:9", "--vi", "udp://127.0.0.1:9",
                                                    "--out", str(tmp_path / "o.txt"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.png").write_bytes(b"x")
    assert "the folder is not empty" in fuse("--ir", "udp://127.0.0.1:9", "--vi", "udp://127.0.0.1:9",
                                             "--out", str(tmp_path / "full"))
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.png"]
    assert "--trim: for video files, not live cameras" in fuse("--ir", "udp://127.0.0.1:9", "--vi",
                                                              "udp://127.0.0.1:9", "--out", str(tmp_path / "o.mp4"),
                                                              "--trim")
    assert "--save-float is for image pairs" in fuse("--ir", "udp://127.0.0.1:9", "--vi",
                                                               "udp://127.0.0.1:9", "--out", str(tmp_path / "o.mp4"),
                                                               "--save-float")
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))


def test_cameras_the_rig_does_not_fit_are_refused_before_anything_is_written(cameras, tmp_path: Path,  # noqa: ANN001
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    cams = cameras(seconds=30)
    bad_rig = tmp_path / "rig.yaml"
    bad_rig.write_text(RIG.replace("[160, 128]", "[320, 256]"))
    out = tmp_path / "live.mp4"
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--model", str(MINI), "--backend", "torch", "--threads", "1", "--ir", cams.urls[0],
              "--vi", cams.urls[1],
              "--out", str(out), "--rig", str(bad_rig), "--duration", "2", "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: IR camera {cams.urls[0]} sends 160x128 but visible camera {cams.urls[1]} 192x144: the rig's IR "
        "camera is 320x256"], err
    assert not out.exists() and not list(tmp_path.glob(".live.*"))
