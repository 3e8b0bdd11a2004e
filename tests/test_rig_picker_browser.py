"""The point picker's page, clicked in a real headless browser: Debian's ``chromium`` with its
``chromedriver`` (package ``chromium-driver``; ``make test`` installs both), driven by Selenium."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.rig.file import apply_homography, corner_error_px, load_rig
from lutfuse_deploy.rig.picker import PickerServer, PickerSession
from lutfuse_deploy.rig.points import fit_points
from tests.rig_picker_helpers import IR_SIZE, TRUTH, VI_SIZE, H, pairs, write_frames


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    return write_frames(tmp_path_factory.mktemp("picker_frames"))


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
        clicks = pairs()
        for i, (ix, iy, vx, vy) in enumerate(clicks):
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
        assert np.abs(clicked - clicks).max() <= 0.5 / scale + 0.05, np.abs(clicked - clicks).round(2).tolist()
        assert np.abs((clicked - clicks).mean(axis=0)).max() < 0.2, (clicked - clicks).mean(axis=0)
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
    init = fit_points(pairs()[:4] + [0, 0, 3, -2], IR_SIZE, VI_SIZE).rig
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
        for ix, iy, vx, vy in pairs()[4:]:
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
