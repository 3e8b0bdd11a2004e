"""``info``: checkpoints are verified, exported graphs and engine bundles are described from their
records and checked against their files; anything that does not match is one ``error:`` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lutfuse_deploy.cli import main
from lutfuse_deploy.io.checkpoints import save_checkpoint
from lutfuse_deploy.models import create_model


def run(argv: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uint8 MMDRFuse student graph (its 8-bit mapping is built in) and its checkpoint beside it."""
    out = tmp_path_factory.mktemp("info")
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("mmdrfuse-student").eval(), out / "s.safetensors")
    env = {**os.environ, "LUTFUSE_DATA": str(out / "no-data")}
    proc = subprocess.run([sys.executable, "-m", "lutfuse_deploy", "export", "--model", str(ckpt), "-o",
                           str(out / "s.onnx"), "--io", "uint8"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out / "s.onnx"


def test_a_corrupted_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save_checkpoint(create_model("mmdrfuse-student").eval(), tmp_path / "m.safetensors")
    code, out, _ = run(["info", path], capsys)
    assert code == 0 and "(verified: the weights match it, all finite)" in out
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one bit of the last weight
    path.write_bytes(bytes(data))
    code, out, err = run(["info", path], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "weights do not match their recorded sha256" in err
    code, _, err = run(["info", tmp_path], capsys)  # a folder holding it: the same refusal
    assert code == 1 and "weights do not match their recorded sha256" in err


def test_an_onnx_graph_is_described_from_its_records(graph: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["info", graph], capsys)
    assert code == 0, err
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in out.splitlines()[1:]}
    assert lines["kind"] == "mmdrfuse-student" and lines["io"] == "uint8" and lines["opset"] == "17"
    assert lines["inputs"] == "ir uint8 [batch, 1, height, width]; vi uint8 [batch, 1, height, width]"
    assert lines["tanh_to_8bit"] == "clip" and "max_lsb" in lines["parity"]
    code, out, _ = run(["info", graph, "--json"], capsys)
    doc = json.loads(out)
    assert doc["source"]["weights_sha256"] and doc["parity"]["inputs"] > 0 and doc["outputs"]["fused"]


def test_a_graph_changed_after_export_is_refused(graph: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    model = onnx.load(str(graph))
    model.producer_version = "edited"
    onnx.save(model, str(tmp_path / "s.onnx"))
    (tmp_path / "s.json").write_bytes(graph.with_suffix(".json").read_bytes())
    code, _, err = run(["info", tmp_path / "s.onnx"], capsys)
    assert code == 1 and err.count("\n") == 1 and "does not match its sidecar s.json" in err
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    code, _, err = run(["info", tmp_path / "junk.onnx"], capsys)
    assert code == 1 and "not a readable ONNX model" in err


def test_an_engine_bundle_is_described_from_its_manifest(
    graph: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lutfuse_deploy.engines import build

    monkeypatch.setattr(build, "tensorrt_version", lambda: None)  # a bundle, whatever this machine has
    code, out, err = run(["build-engine", "--onnx", graph, "--target", "orin-nx", "-o", tmp_path / "engines",
                          "--json"], capsys)
    assert code == 0, err
    folder = Path(json.loads(out)["folder"])
    code, out, err = run(["info", folder], capsys)
    assert code == 0, err
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in out.splitlines()[1:]}
    assert lines["artifact"] == "engine bundle" and lines["target"] == "orin-nx" and lines["io"] == "uint8"
    assert lines["status"].startswith("bundle, not built yet")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / manifest["onnx_file"]).write_bytes(b"swapped")
    code, _, err = run(["info", folder], capsys)
    assert code == 1 and err.count("\n") == 1 and "does not match its manifest (onnx_sha256 differs)" in err
