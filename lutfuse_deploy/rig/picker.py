"""The point picker: a page in the browser to click point pairs, served by a small local web server.

People register two cameras best by eye: click a corner in the thermal frame, the same corner in the
visible frame, eight to twenty times, and watch the warped IR settle onto the visible frame. The page
(``picker.html``, package data, no external assets) only collects clicks and draws; every number it
shows comes from this server, which fits with ``rig.points.fit_points`` and renders overlays with
``rig.overlay``, so the page and ``calibrate --points`` can never disagree. The server listens on
127.0.0.1 only (reach it from another machine through ``ssh -L``), and writes one file, the rig, when
the page's Save button asks; it then stops. It is the standard library's ``http.server``: the page
makes a handful of requests, so a web framework would be a dependency for nothing.
"""

from __future__ import annotations

import errno
import io
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from lutfuse_deploy.errors import LutfuseError, RigError
from lutfuse_deploy.rig.file import Rig, apply_homography, made_record, rig_from_dict, save_rig
from lutfuse_deploy.rig.points import MIN_POINTS, _check_inside, fit_points

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")  # Host headers a tunnelled or local browser sends
MAX_BODY = 1 << 20  # a POST holds a few hundred numbers; refuse anything far larger
MODES = ("blend", "checker")
CORRECTIONS = {1: "translation", 2: "similarity", 3: "affine"}  # what 1-3 pairs can correct in an initial rig


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _correction(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The 3 x 3 map that moves points ``p`` exactly onto ``q`` with as few degrees of freedom as the
    number of pairs allows: a shift for one pair, a similarity for two, an affine map for three."""
    c = np.eye(3)
    if len(p) == 1:
        c[:2, 2] = q[0] - p[0]
    elif len(p) == 2:
        z, w = p[:, 0] + 1j * p[:, 1], q[:, 0] + 1j * q[:, 1]
        if abs(z[1] - z[0]) < 1.0:
            raise RigError("the two pairs' points lie on one spot: click them further apart")
        a = (w[1] - w[0]) / (z[1] - z[0])
        b = w[0] - a * z[0]
        c[:2] = [[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]]
    else:
        x = np.concatenate([p, np.ones((3, 1))], axis=1)
        if abs(np.linalg.det(x)) < 1.0:  # twice the triangle's area in pixels squared
            raise RigError("the three pairs' points lie on one line: click them spread over the image")
        c[:2] = np.linalg.solve(x, q).T
    return c


@dataclass
class PickerSession:
    """The two frames, the rig to start from (if any) and how to fit: everything a request needs."""

    ir: np.ndarray  # uint8 H x W
    vi: np.ndarray  # uint8 H x W x 3
    output: str = "visible"
    init: Rig | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ir_size = (int(self.ir.shape[1]), int(self.ir.shape[0]))
        self.vi_size = (int(self.vi.shape[1]), int(self.vi.shape[0]))
        self.ir_png = _png(self.ir)
        self.vi_png = _png(self.vi)
        self._overlay_key: tuple[float, ...] | None = None
        self._overlay: np.ndarray | None = None
        self._lock = threading.Lock()

    def initial_points(self) -> list[list[float]]:
        """The initial rig's clicked pairs (``made.points``), so new clicks add to them."""
        if self.init is None:
            return []
        try:
            pts = np.asarray(self.init.made.get("points", []), dtype=np.float64).reshape(-1, 4)
            _check_inside(pts[:, :2], self.ir_size, "ir")
            _check_inside(pts[:, 2:], self.vi_size, "vi")
        except (TypeError, ValueError, RigError):
            return []  # a hand-edited record we cannot use: start with no pairs, the rig still shows
        return pts.tolist() if np.isfinite(pts).all() else []

    def state(self) -> dict[str, Any]:
        init = None if self.init is None else {"homography": self.init.homography.tolist(),
                                                 "describe": self.init.describe(),
                                                 "method": self.init.made.get("method", "hand-written")}
        return {"ir": {"name": self.source.get("ir", "ir"), "size": list(self.ir_size)},
                "vi": {"name": self.source.get("vi", "vi"), "size": list(self.vi_size)},
                "min_points": MIN_POINTS, "init": init, "points": self.initial_points()}

    def parse_points(self, body: Any) -> np.ndarray:
        """N x 4 pairs from a request body ``{"points": [[ir_x, ir_y, vi_x, vi_y], ...]}``."""
        rows = body.get("points") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 4 for r in rows):
            raise RigError('the request must be {"points": [[ir_x, ir_y, vi_x, vi_y], ...]}')
        try:
            pts = np.array(rows, dtype=np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            raise RigError("every point must be four numbers") from None
        if not np.isfinite(pts).all():
            raise RigError("a point holds a non-finite number")
        return pts

    def fit(self, pts: np.ndarray) -> tuple[Rig | None, dict[str, Any]]:
        """The rig these pairs give and what the page shows about it (residuals, outliers, what is missing).

        Four pairs or more: a robust fit of their own. Fewer, with an initial rig: that rig, corrected so
        the pairs land exactly (a shift, a similarity or an affine map). Fewer and no initial rig: none yet.
        """
        n = len(pts)
        info: dict[str, Any] = {"pairs": n, "needed": 0, "method": None, "homography": None,
                                "residuals_px": [], "outliers": [], "rms_px": None, "describe": None}
        source = {**self.source, "tool": "picker"}
        if n >= MIN_POINTS:
            fitted = fit_points(pts, self.ir_size, self.vi_size, self.output, source=source)
            rig, info["outliers"] = fitted.rig, fitted.outliers
            info.update(fitted.summary(), method="points")
        elif self.init is None:
            info["needed"] = MIN_POINTS - n
            return None, info
        elif n == 0:
            rig = rig_from_dict({**self.init.to_dict(), "output": self.output})
            info["method"] = "init"
        else:
            _check_inside(pts[:, :2], self.ir_size, "ir")
            _check_inside(pts[:, 2:], self.vi_size, "vi")
            h0 = self.init.homography
            h = _correction(apply_homography(h0, pts[:, :2]), pts[:, 2:]) @ h0
            made = made_record("init+points", init=self.init.made.get("method", "hand-written"),
                               correction=CORRECTIONS[n], points=pts.tolist(), source=source)
            rig = rig_from_dict({**self.init.to_dict(), "output": self.output}).with_homography(h, made)
            info["method"] = f"init + {CORRECTIONS[n]}"
        residuals = np.linalg.norm(apply_homography(rig.homography, pts[:, :2]) - pts[:, 2:], axis=1) if n else []
        info.update(homography=rig.homography.tolist(), residuals_px=[float(r) for r in residuals],
                    describe=rig.describe())
        return rig, info

    def overlay_png(self, homography: list[float], mode: str) -> bytes:
        """One panel of ``rig.overlay.overlay_image`` (blend or checkerboard) over the whole visible frame."""
        from lutfuse_deploy.rig.overlay import overlay_image

        if mode not in MODES:
            raise RigError(f"overlay mode {mode!r} must be one of {', '.join(MODES)}")
        key = tuple(homography)
        with self._lock:
            if key != self._overlay_key or self._overlay is None:
                h = np.array(homography, dtype=np.float64).reshape(3, 3)
                rig = rig_from_dict({"ir_size": list(self.ir_size), "vi_size": list(self.vi_size),
                                     "homography": h.tolist()}, "overlay")
                self._overlay, self._overlay_key = overlay_image(self.ir, self.vi, rig), key
            picture = self._overlay
        w = self.vi_size[0]
        return _png(np.ascontiguousarray(picture[:, :w] if mode == "blend" else picture[:, -w:]))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # the terminal shows what the command prints, not one line per request

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _local(self) -> bool:
        """Refuse requests whose Host is not this machine's loopback: a web page elsewhere cannot reach
        the picker through a DNS name that points at 127.0.0.1 (DNS rebinding)."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        if host in LOCAL_NAMES:
            return True
        self._send(HTTPStatus.FORBIDDEN, b"the picker answers only http://127.0.0.1 or http://localhost",
                   "text/plain; charset=utf-8")
        return False

    def do_GET(self) -> None:
        if not self._local():
            return
        url = urlsplit(self.path)
        session = self.server.picker.session
        if url.path == "/":
            self._send(HTTPStatus.OK, self.server.picker.page, "text/html; charset=utf-8")
        elif url.path in ("/ir.png", "/vi.png"):
            self._send(HTTPStatus.OK, session.ir_png if url.path == "/ir.png" else session.vi_png, "image/png")
        elif url.path == "/state":
            self._json({**session.state(), "out": str(self.server.picker.out)})
        elif url.path == "/overlay.png":
            query = parse_qs(url.query)
            try:
                values = [float(v) for v in query.get("h", [""])[0].split(",")]
                if len(values) != 9:
                    raise RigError("h must be the 9 numbers of a 3x3 homography, row by row")
                png = session.overlay_png(values, query.get("mode", ["blend"])[0])
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, b"h must be 9 numbers", "text/plain; charset=utf-8")
            except LutfuseError as exc:
                self._send(HTTPStatus.BAD_REQUEST, str(exc).encode(), "text/plain; charset=utf-8")
            else:
                self._send(HTTPStatus.OK, png, "image/png")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if not self._local():
            return
        picker = self.server.picker
        # a JSON body needs a CORS preflight from any other origin, which this server never grants
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._json({"error": "send JSON (Content-Type: application/json)"}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._json({"error": f"a request body of {length} bytes (1 to {MAX_BODY})"}, HTTPStatus.BAD_REQUEST)
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._json({"error": "the request body is not JSON"}, HTTPStatus.BAD_REQUEST)
            return
        if self.path == "/fit":
            self._fit(body, picker)
        elif self.path == "/save":
            self._save(body, picker)
        else:
            self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

    def _fit(self, body: Any, picker: PickerServer) -> None:
        try:
            _, info = picker.session.fit(picker.session.parse_points(body))
        except LutfuseError as exc:
            self._json({"error": str(exc), "pairs": len(body.get("points", [])) if isinstance(body, dict) else 0})
            return
        self._json({**info, "error": None})

    def _save(self, body: Any, picker: PickerServer) -> None:
        with picker.save_lock:
            if picker.saved is not None:
                self._json({"error": f"already saved to {picker.out}"}, HTTPStatus.CONFLICT)
                return
            try:
                rig, info = picker.session.fit(picker.session.parse_points(body))
                if rig is None:
                    raise RigError(f"{info['pairs']} pair(s): click {info['needed']} more before saving")
                save_rig(rig, picker.out)
            except LutfuseError as exc:
                self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
                return
            picker.saved = rig
        self._json({"saved": str(picker.out), "describe": rig.describe(), "error": None})
        picker.done.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    picker: PickerServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of socketserver's traceback; none when the browser dropped the connection
        (it cancels an overlay when a newer fit replaces it)."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            sys.stderr.write(f"picker: a request failed ({type(exc).__name__}: {exc})\n")


class PickerServer:
    """Serve the picker for ``session`` on 127.0.0.1:``port`` (0: any free port) until Save writes ``out``."""

    def __init__(self, session: PickerSession, out: str | Path, port: int = DEFAULT_PORT) -> None:
        self.session = session
        self.out = Path(out)
        self.page = resources.files("lutfuse_deploy.rig").joinpath("picker.html").read_bytes()
        self.saved: Rig | None = None
        self.save_lock = threading.Lock()
        self.done = threading.Event()
        try:
            self.httpd = _Server((HOST, port), _Handler)
        except OverflowError:
            raise RigError(f"port {port} is not a port number (0 to 65535)") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RigError(f"port {port} on {HOST} is in use: choose another with --port "
                               "(--port 0 picks a free one)") from None
            raise RigError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc})") from None
        self.httpd.picker = self

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def serve(self, timeout: float | None = None) -> Rig | None:
        """Answer requests until the page saves the rig (returned) or ``timeout`` seconds pass (None).
        Ctrl-C (KeyboardInterrupt) stops the server and propagates; nothing has been written then."""
        thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # short waits keep the main thread responsive to Ctrl-C
            while not self.done.wait(0.2):
                if deadline is not None and time.monotonic() > deadline:
                    break
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            thread.join()
        return self.saved

    def close(self) -> None:
        """Release the port of a server that never served."""
        self.httpd.server_close()
