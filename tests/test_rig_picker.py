"""The point picker: its server (fits, overlays, saving, refusals), ``calibrate --pick`` and the page itself,
clicked in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium)."""

from __future__ import annotations

import io
import json
import os
import shutil
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

IR_SIZE, VI_SIZE = (320, 256), (400, 300)
# a projective warp: the 320x256 IR frame onto most of the 400x300 visible frame
H = np.array([[1.08, 0.03, 22.0], [-0.02, 1.05, 14.0], [1.5e-4, -1e-4, 1.0]])
TRUTH = rig_from_dict({"ir_size": list(IR_SIZE), "vi_size": list(VI_SIZE), "homography": H.tolist()})
# eight IR points spread over the frame (what a person clicks: corners of warm objects)
IR_POINTS = np.array([[18, 20], [160, 14], [300, 24], [292, 128], [304, 236], [150, 242], [24, 230], [110, 110]], float)


def _frames() -> tuple[np.ndarray, np.ndarray]:
    """An IR frame of blocks and discs, and the visible frame it becomes through H (so the overlay lines up)."""
    import cv2

    rng = np.random.default_rng(3)
    ir = np.full((IR_SIZE[1], IR_SIZE[0]), 35, np.uint8)
    for _ in range(14):
        x, y = (int(v) for v in rng.integers(5, [290, 230]))
        cv2.rectangle(ir, (x, y), (x + int(rng.integers(12, 60)), y + int(rng.integers(12, 45))), int(rng.integers(90, 250)), -1)
    for _ in range(6):
        centre = (int(rng.integers(20, 300)), int(rng.integers(20, 236)))
        cv2.circle(ir, centre, int(rng.integers(6, 18)), int(rng.integers(120, 255)), -1)
    gray = cv2.warpPerspective(ir, H, VI_SIZE, flags=cv2.INTER_LINEAR)
    vi = np.stack([255 - gray, gray // 2 + 60, gray], axis=-1).astype(np.uint8)  # another modality's look
    return ir, vi


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("picker_frames")
    ir, vi = _frames()
    Image.fromarray(ir).save(folder / "ir.png")
    Image.fromarray(vi).save(folder / "vi.png")
    return folder / "ir.png", folder / "vi.png", ir, vi


def _pairs(ir_points: np.ndarray = IR_POINTS) -> np.ndarray:
    return np.concatenate([ir_points, apply_homography(H, ir_points)], axis=1)


# --- the server, without a browser -------------------------------------------------------------------

def test_fewer_than_four_pairs_say_how_many_are_needed(frames):
    session = PickerSession(frames[2], frames[3])
    rig, info = session.fit(_pairs()[:3])
    assert rig is None and info["needed"] == 1 and info["homography"] is None


def test_eight_pairs_fit_with_residuals_and_a_named_wrong_click(frames):
    session = PickerSession(frames[2], frames[3])
    pts = np.concatenate([_pairs(), [[200, 60, 0, 0]]])
    pts[-1, 2:] = apply_homography(H, pts[-1:, :2])[0] + [12, -9]  # a partner clicked 15 px off
    rig, info = session.fit(pts)
    assert info["outliers"] == [8] and info["residuals_px"][8] > 10 and max(info["residuals_px"][:8]) < 1e-4
    assert corner_error_px(rig.homography, TRUTH) < 1e-4
    assert rig.made["method"] == "points" and rig.made["source"]["tool"] == "picker"


@pytest.mark.parametrize("n, method", [(0, "init"), (1, "init + translation"), (2, "init + similarity"),
                                       (3, "init + affine")])
def test_an_initial_rig_is_corrected_by_one_to_three_pairs(frames, n, method):
    # the initial rig is the truth shifted 6 px right and 4 px down: a pair or more must undo that
    shift = np.array([[1, 0, 6], [0, 1, 4], [0, 0, 1.0]])
    init = TRUTH.with_homography(shift @ H, {"method": "manual"})
    session = PickerSession(frames[2], frames[3], init=init)
    rig, info = session.fit(_pairs()[:n])
    assert info["method"] == method and len(info["residuals_px"]) == n
    error = corner_error_px(rig.homography, TRUTH)
    assert error == pytest.approx(np.hypot(6, 4), abs=1e-4) if n == 0 else error < 1e-4
    if n:
        assert rig.made["method"] == "init+points" and rig.made["init"] == "manual"


def test_an_initial_rig_made_from_points_brings_its_pairs(frames):
    init = fit_points(_pairs()[:5], IR_SIZE, VI_SIZE).rig
    state = PickerSession(frames[2], frames[3], init=init).state()
    assert state["points"] == _pairs()[:5].tolist()
    assert state["init"]["method"] == "points"


def test_collinear_correction_pairs_are_refused(frames):
    session = PickerSession(frames[2], frames[3], init=TRUTH)
    line = np.array([[10, 10], [100, 100], [200, 200]], float)
    with pytest.raises(RigError, match="one line"):
        session.fit(_pairs(line))


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
    status, body = _request(server.url + "save", {"points": _pairs()[:3].tolist()})
    assert status == 400 and b"1 more" in body and not out.exists()
    status, body = _request(server.url + "save", {"points": _pairs().tolist()})
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
    proc = subprocess.Popen([sys.executable, "-m", "lutfuse_deploy", "calibrate", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stream = proc.stdout if intro_on == "stdout" else proc.stderr
    assert stream is not None
    # read them here: communicate() later reads the pipe itself, past what readline buffered
    lines = "".join(stream.readline() for _ in range(3))
    assert "http://127.0.0.1:" in lines, lines
    return proc, lines.splitlines()[0].rsplit("open ", 1)[1].strip(), lines


def _save_and_exit(proc: subprocess.Popen, url: str) -> str:
    """Press Save the way the page does; the command must then end by itself, with status 0."""
    try:
        assert _request(url + "save", {"points": _pairs().tolist()})[0] == 200
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
        assert _request(url + "fit", {"points": _pairs().tolist()})[0] == 200
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


# --- the page, clicked in a real browser -------------------------------------------------------------------

def _chromium() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver") if Path(p).is_file()), None)
    return (browser, driver) if browser and driver else None


@pytest.fixture()
def browser():
    found = _chromium()
    if found is None:
        pytest.skip("no chromium + chromedriver on this machine (Debian: apt-get install chromium chromium-driver; "
                    "`make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--force-device-scale-factor=1", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    # the system driver, named explicitly: Selenium Manager would otherwise try to download one
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition: str, what: str, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(f"return {condition};"), message=f"the page never showed {what}")


def _fit_scale(driver, panel: str) -> tuple[float, float, float]:
    """Where the page draws a fitted image, worked out here from the canvas's box on screen (not from the
    page's own code, so that a page that draws and reads coordinates the same wrong way still fails):
    the image is centred and scaled to fit; its left edge, x = -0.5, is at the returned left."""
    left, top, width, height = driver.execute_script(
        "const r = document.getElementById(arguments[0] + '-canvas').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];", panel)
    w, h = IR_SIZE if panel == "ir" else VI_SIZE
    scale = min(width / w, height / h)
    return left + (width - w * scale) / 2, top + (height - h * scale) / 2, scale


def _click(driver, panel: str, x: float, y: float) -> None:
    """Click where the page draws image pixel (x, y) (centre at integer coordinates): real mouse events."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    left, top, scale = _fit_scale(driver, panel)
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(left + (x + 0.5) * scale)),
                                            int(round(top + (y + 0.5) * scale))).click()
    actions.perform()
    ActionChains(driver).reset_actions()


def _rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#pairs tbody tr')].map(r => [...r.cells].map(c => c.textContent));")


@pytest.mark.slow
def test_page_clicks_make_the_expected_rig(frames, tmp_path, browser):
    out = tmp_path / "rig.yaml"
    session = PickerSession(frames[2], frames[3], source={"ir": "ir.png", "vi": "vi.png"})
    server = PickerServer(session, out, port=0)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(rig=server.serve(timeout=120)), daemon=True)
    thread.start()
    try:
        browser.get(server.url)
        _wait(browser, "window.picker && window.picker.ready()", "both frames loaded")
        assert "4 more" in browser.find_element("id", "overlay-note").text
        scale = min(_fit_scale(browser, panel)[2] for panel in ("ir", "vi"))
        pairs = _pairs()
        for i, (ix, iy, vx, vy) in enumerate(pairs):
            # IR first for most pairs, the visible point first for some: both orders make a pair
            first, second = (("ir", ix, iy), ("vi", vx, vy)) if i % 3 else (("vi", vx, vy), ("ir", ix, iy))
            _click(browser, *first)
            _click(browser, *second)
            _wait(browser, f"window.picker.pairs().length === {i + 1}", f"pair {i + 1}")
            if i == 2:
                assert "1 more pair" in browser.find_element("id", "status").text
        _wait(browser, "window.picker.fit() && window.picker.fit().pairs === 8", "the fit of 8 pairs")
        # the page recorded each click within half a screen pixel of the intended image point (a click lands
        # on a whole screen pixel; 0.05 more for the canvas bitmap's rounded size), with no shift overall
        # (a page that lost the half-pixel convention would be 0.5 px off on average)
        clicked = np.array(browser.execute_script("return window.picker.pairs();"))
        assert np.abs(clicked - pairs).max() <= 0.5 / scale + 0.05, np.abs(clicked - pairs).round(2).tolist()
        assert np.abs((clicked - pairs).mean(axis=0)).max() < 0.2, (clicked - pairs).mean(axis=0)
        rows = _rows(browser)
        assert len(rows) == 8 and all(r[3].endswith("px") for r in rows)
        residuals = [float(r[3].split()[0]) for r in rows]
        assert max(residuals) < 1.0 and "rms" in browser.find_element("id", "status").text

        # a wrong click is flagged as an outlier, deleted with its row's button; another pair, undone
        wrong = apply_homography(H, np.array([[200.0, 70.0]]))[0] + [14, -10]
        _click(browser, "ir", 200, 70)
        _click(browser, "vi", *wrong)
        _wait(browser, "window.picker.fit() && window.picker.fit().pairs === 9", "the fit of 9 pairs")
        assert "outlier" in _rows(browser)[8][3] and "outliers: 9" in browser.find_element("id", "status").text
        browser.find_elements("css selector", "#pairs button.delete")[8].click()
        _click(browser, "ir", 60, 60)
        _click(browser, "vi", *apply_homography(H, np.array([[60.0, 60.0]]))[0])
        _wait(browser, "window.picker.pairs().length === 9", "the ninth pair")
        browser.find_element("id", "undo").click()
        _wait(browser, "window.picker.fit() && window.picker.fit().pairs === 8 && !window.picker.fit().outliers.length",
              "the 8 good pairs again")
        assert np.array_equal(np.array(browser.execute_script("return window.picker.pairs();")), clicked)

        # the overlay: the server's picture of this fit, blend then checkerboard
        _wait(browser, "(i => !i.hidden && i.complete && i.naturalWidth > 0)(document.getElementById('overlay'))",
              "the overlay")
        assert browser.execute_script("return document.getElementById('overlay').naturalWidth;") == VI_SIZE[0]
        browser.find_element("id", "mode-checker").click()
        _wait(browser, "(i => i.src.includes('mode=checker') && i.complete && i.naturalWidth > 0)"
                       "(document.getElementById('overlay'))", "the checkerboard overlay")
        browser.save_screenshot(str(tmp_path / "picker.png"))

        browser.find_element("id", "save").click()
        _wait(browser, "!document.getElementById('banner').hidden", "the saved banner")
        assert "Saved" in browser.find_element("id", "banner").text
        thread.join(20)
    finally:
        server.done.set()
        thread.join(10)
    assert not thread.is_alive() and result["rig"] is not None
    saved = load_rig(out)
    # the rig is exactly the fit of the pairs the page recorded, and within a pixel of the truth
    expected = fit_points(clicked, IR_SIZE, VI_SIZE).rig
    assert corner_error_px(saved.homography, expected) < 1e-4
    assert corner_error_px(saved.homography, TRUTH) < 0.5 / scale + 0.1
    assert saved.made["points"] == clicked.tolist() and saved.made["source"]["tool"] == "picker"
    assert Image.open(tmp_path / "picker.png").size[0] > 1000


@pytest.mark.slow
def test_page_starts_from_an_initial_rig(frames, tmp_path, browser):
    # an initial rig from four pairs: the page shows them and its overlay, and four more clicks refine it
    init = fit_points(_pairs()[:4] + [0, 0, 3, -2], IR_SIZE, VI_SIZE).rig
    out = tmp_path / "rig.yaml"
    server = PickerServer(PickerSession(frames[2], frames[3], init=init), out, port=0)
    thread = threading.Thread(target=server.serve, kwargs={"timeout": 120}, daemon=True)
    thread.start()
    try:
        browser.get(server.url)
        _wait(browser, "window.picker && window.picker.ready()", "both frames loaded")
        assert len(_rows(browser)) == 4
        _wait(browser, "(i => !i.hidden && i.complete && i.naturalWidth > 0)(document.getElementById('overlay'))",
              "the initial rig's overlay")
        for ix, iy, vx, vy in _pairs()[4:]:
            _click(browser, "ir", ix, iy)
            _click(browser, "vi", vx, vy)
        _wait(browser, "window.picker.fit() && window.picker.fit().pairs === 8", "the fit of 8 pairs")
        browser.find_element("id", "save").click()
        thread.join(20)
    finally:
        server.done.set()
        thread.join(10)
    saved = load_rig(out)
    assert len(saved.made["points"]) == 8 and saved.made["points"][:4] == init.made["points"]
    # the four shifted pairs of the start are still in the fit (3.6 px off: within the 5 px threshold)
    assert corner_error_px(saved.homography, TRUTH) < corner_error_px(init.homography, TRUTH)
