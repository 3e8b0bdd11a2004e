"""The point picker without a browser: its server (fits, overlays, saving, refusals) and ``calibrate --pick``
as a user runs it (the page itself is clicked in tests/test_rig_picker_browser.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.errors import RigError
from lutfuse_deploy.rig.file import apply_homography, corner_error_px, load_rig, rig_from_dict, save_rig
from lutfuse_deploy.rig.picker import PickerServer, PickerSession
from lutfuse_deploy.rig.points import fit_points
from tests.conftest import assert_one_line_error
from tests.rig_picker_helpers import IR_SIZE, TRUTH, VI_SIZE, H, pairs, write_frames


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    return write_frames(tmp_path_factory.mktemp("picker_frames"))


# --- the server, without a browser -------------------------------------------------------------------

def test_fewer_than_four_pairs_say_how_many_are_needed(frames):
    session = PickerSession(frames[2], frames[3])
    rig, info = session.fit(pairs()[:3])
    assert rig is None and info["needed"] == 1 and info["homography"] is None


def test_eight_pairs_fit_with_residuals_and_a_named_wrong_click(frames):
    session = PickerSession(frames[2], frames[3])
    pts = np.concatenate([pairs(), [[200, 60, 0, 0]]])
    pts[-1, 2:] = apply_homography(H, pts[-1:, :2])[0] + [12, -9]  # a partner clicked 15 px off
    rig, info = session.fit(pts)
    assert info["outliers"] == [8] and info["residuals_px"][8] > 10 and max(info["residuals_px"][:8]) < 1e-4
    assert corner_error_px(rig.homography, TRUTH) < 1e-4
    assert rig.made["method"] == "points" and rig.made["source"]["tool"] == "picker"


@pytest.mark.parametrize("n, method", [(0, "init"), (1, "init + translation"), (2, "init + similarity"),
                                       (3, "init + affine")])
def test_an_initial_rig_is_corrected_by_one_to_threepairs(frames, n, method):
    # the initial rig is the truth shifted 6 px right and 4 px down: a pair or more must undo that
    shift = np.array([[1, 0, 6], [0, 1, 4], [0, 0, 1.0]])
    init = TRUTH.with_homography(shift @ H, {"method": "manual"})
    session = PickerSession(frames[2], frames[3], init=init)
    rig, info = session.fit(pairs()[:n])
    assert info["method"] == method and len(info["residuals_px"]) == n
    error = corner_error_px(rig.homography, TRUTH)
    assert error == pytest.approx(np.hypot(6, 4), abs=1e-4) if n == 0 else error < 1e-4
    if n:
        assert rig.made["method"] == "init+points" and rig.made["init"] == "manual"


def test_an_initial_rig_made_from_points_brings_itspairs(frames):
    init = fit_points(pairs()[:5], IR_SIZE, VI_SIZE).rig
    state = PickerSession(frames[2], frames[3], init=init).state()
    assert state["points"] == pairs()[:5].tolist()
    assert state["init"]["method"] == "points"


def test_collinear_correction_pairs_are_refused(frames):
    session = PickerSession(frames[2], frames[3], init=TRUTH)
    line = np.array([[10, 10], [100, 100], [200, 200]], float)
    with pytest.raises(RigError, match="one line"):
        session.fit(pairs(line))


def _request(url: str, body: object | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture()
def served(frames, tmp_path):
    """A picker on a free port, serving in a thread for at most 60 s; yields (server, out path)."""
    server = PickerServer(PickerSession(frames[2], frames[3], source={"ir": "ir.png", "vi": "vi.png"}),
                          tmp_path / "rig.yaml", port=0)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(rig=server.serve(timeout=60)), daemon=True)
    thread.start()
    yield server, tmp_path / "rig.yaml", thread, result
    server.done.set()
    thread.join(10)


def test_server_routes_and_refusals(served):
    server, out, thread, result = served
    status, body = _request(server.url)
    assert status == 200 and b"<canvas" in body
    assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body  # no external assets
    for name, size in (("ir.png", IR_SIZE), ("vi.png", VI_SIZE)):
        status, body = _request(server.url + name)
        assert status == 200 and Image.open(io.BytesIO(body)).size == size
    h = ",".join(f"{v:.12g}" for v in H.ravel())
    blend = _request(server.url + f"overlay.png?mode=blend&h={h}")
    checker = _request(server.url + f"overlay.png?mode=checker&h={h}")
    assert blend[0] == checker[0] == 200 and blend[1] != checker[1]
    assert _request(server.url + "overlay.png?mode=stripes&h=" + h)[0] == 400
    assert _request(server.url + "overlay.png?h=1,2,3")[0] == 400
    assert _request(server.url, headers={"Host": "attacker.example:80"})[0] == 403
    status, body = _request(server.url + "fit", b"x", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, body = _request(server.url + "save", {"points": pairs()[:3].tolist()})
    assert status == 400 and b"1 more" in body and not out.exists()
    status, body = _request(server.url + "save", {"points": pairs().tolist()})
    assert status == 200 and json.loads(body)["saved"] == str(out)
    thread.join(10)
    assert not thread.is_alive() and result["rig"] is not None
    assert corner_error_px(load_rig(out).homography, TRUTH) < 1e-4


def test_a_busy_port_is_one_clear_error(frames, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RigError, match=r"port \d+ on 127.0.0.1 is in use"):
            PickerServer(PickerSession(frames[2], frames[3]), tmp_path / "rig.yaml", port=busy.getsockname()[1])


# --- calibrate --pick, as a user runs it ----------------------------------------------------------------

def _start_cli(*args: str | Path, env: dict | None = None, intro_on: str = "stdout") -> tuple[subprocess.Popen, str, str]:
    """Start ``calibrate --pick``; its URL and the three lines it prints before serving."""
    # Ctrl-C as in a terminal: a suite started in the background (`cmd &` in a script) hands its
    # children SIGINT ignored, and Python then installs no KeyboardInterrupt for it
    proc = subprocess.Popen([sys.executable, "-m", "lutfuse_deploy", "calibrate", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stream = proc.stdout if intro_on == "stdout" else proc.stderr
    assert stream is not None
    # read them here: communicate() later reads the pipe itself, past what readline buffered
    lines = "".join(stream.readline() for _ in range(3))
    assert "http://127.0.0.1:" in lines, lines
    return proc, lines.splitlines()[0].rsplit("open ", 1)[1].strip(), lines


def _save_and_exit(proc: subprocess.Popen, url: str) -> str:
    """Press Save the way the page does; the command must then end by itself, with status 0."""
    try:
        assert _request(url + "save", {"points": pairs().tolist()})[0] == 200
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    return stdout


def test_cli_pick_saves_from_the_page_and_exits(frames, tmp_path):
    out = tmp_path / "rig.yaml"
    proc, url, intro = _start_cli("--ir", frames[0], "--vi", frames[1], "--pick", "--port", "0", "-o", out,
                                  "--overlay", tmp_path / "overlay.png")
    stdout = _save_and_exit(proc, url)
    port = url.rsplit(":", 1)[1].strip("/")
    assert f"ssh -N -L {port}:127.0.0.1:{port}" in intro and "Ctrl-C stops without writing" in intro
    assert f"wrote {out}" in stdout and "points from 8 pair(s)" in stdout
    assert corner_error_px(load_rig(out).homography, TRUTH) < 1e-4
    assert Image.open(tmp_path / "overlay.png").size == (2 * VI_SIZE[0] + 8, VI_SIZE[1])


def test_cli_pick_json_and_open(frames, tmp_path):
    # --open hands the URL to the browser that $BROWSER names (Python's webbrowser): here a script
    opener = tmp_path / "opener.sh"
    opener.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened.txt"}\n')
    opener.chmod(0o755)
    env = {**os.environ, "BROWSER": f"{opener} %s"}
    out = tmp_path / "rig.yaml"
    proc, url, _ = _start_cli("--ir", frames[0], "--vi", frames[1], "--pick", "--port", "0", "--open", "--json",
                              "-o", out, env=env, intro_on="stderr")  # with --json, stdout holds only the result
    stdout = _save_and_exit(proc, url)
    result = json.loads(stdout)
    assert result["rig"] == str(out) and result["pairs"] == 8 and result["outliers"] == []
    assert len(result["residuals_px"]) == 8
    assert (tmp_path / "opened.txt").read_text().strip() == url


@pytest.mark.parametrize("output_args, expected", [((), "overlap"), (("--output", "visible"), "visible")])
def test_cli_pick_init_gives_the_output_region_unless_told(frames, tmp_path, output_args, expected):
    init = tmp_path / "rig0.yaml"
    save_rig(rig_from_dict({**TRUTH.to_dict(), "output": "overlap"}), init)
    out = tmp_path / "rig.yaml"
    proc, url, _ = _start_cli("--ir", frames[0], "--vi", frames[1], "--pick", "--init", init, *output_args,
                              "--port", "0", "-o", out)
    _save_and_exit(proc, url)
    assert load_rig(out).output == expected


def test_cli_pick_ctrl_c_writes_nothing(frames, tmp_path):
    out = tmp_path / "rig.yaml"
    proc, url, _ = _start_cli("--ir", frames[0], "--vi", frames[1], "--pick", "--port", "0", "-o", out)
    try:
        assert _request(url + "fit", {"points": pairs().tolist()})[0] == 200
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and stderr.split() in (["aborted"], ["interrupted"]), stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_pick_refusals(frames, tmp_path):
    ir, vi = frames[0], frames[1]
    out = tmp_path / "rig.yaml"
    cli = [sys.executable, "-m", "lutfuse_deploy", "calibrate"]

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=60)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert_one_line_error(run("--ir", ir, "--vi", vi, "--pick", "--port", port, "-o", out), f"port {port}")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert_one_line_error(run("--ir", broken, "--vi", vi, "--pick", "--port", "0", "-o", out), "broken.png")
    assert_one_line_error(run("--ir", ir, "--vi", vi, "--pick", "--port", "70000", "-o", out), "70000")
    pts = tmp_path / "pts.csv"
    pts.write_text("ir_x,ir_y,vi_x,vi_y\n")
    assert_one_line_error(run("--ir", ir, "--vi", vi, "--pick", "--points", pts, "-o", out), "--pick")
    assert_one_line_error(run("--ir", ir, "--vi", vi, "--points", pts, "--port", "0", "-o", out), "--port")
    assert_one_line_error(run("--ir", ir, "--vi", vi, "--points", pts, "--open", "-o", out), "--open")
    small = tmp_path / "rig0.yaml"
    save_rig(rig_from_dict({"ir_size": [64, 48], "vi_size": [80, 60], "homography": np.eye(3).tolist()}), small)
    assert_one_line_error(run("--ir", ir, "--vi", vi, "--pick", "--init", small, "--port", "0", "-o", out),
                          "the rig says 64x48")
    assert not out.exists()
