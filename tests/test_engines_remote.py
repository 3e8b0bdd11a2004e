"""`--remote USER@HOST` with fake ssh/scp/trtexec on PATH: the "device" is a folder on this machine,
and the bundle's build.sh really runs there (its trtexec branch)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from engines_helpers import FAKE_TRTEXEC, make_onnx

from lutfuse_deploy.cli import main
from lutfuse_deploy.engines import build as eb
from lutfuse_deploy.engines.manifest import read_manifest
from lutfuse_deploy.engines.remote import check_remote
from lutfuse_deploy.errors import EngineError, InputError

FAKE_SSH = """#!/usr/bin/env bash
echo "ssh $*" >> "$FAKE_LOG"
while [[ "$1" == -* ]]; do [[ "$1" == -o ]] && shift; shift; done
host="$1"; shift
cd "$FAKE_REMOTE_HOME" && bash -c "$*"
"""

FAKE_SCP = """#!/usr/bin/env bash
echo "scp $*" >> "$FAKE_LOG"
args=()
for a in "$@"; do
  case "$a" in
    -r|-q) ;;
    *:*) args+=("$FAKE_REMOTE_HOME/${a#*:}") ;;
    *) args+=("$a") ;;
  esac
done
cp -r "${args[@]}"
"""


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("scp", FAKE_SCP), ("trtexec", FAKE_TRTEXEC)):
        exe = bin_dir / name
        exe.write_text(text)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    home = tmp_path / "device-home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_REMOTE_HOME", str(home))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("BUILD_WITH", "trtexec")  # the device has trtexec but not the toolkit
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "TensorRT is not installed here"))
    return home


def test_remote_build_copies_builds_and_fetches_the_engine(
    tmp_path: Path, device: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lut = make_onnx(tmp_path / "lut.onnx")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "build-engine",
                "--onnx",
                str(lut),
                "--target",
                "orin-nx",
                "--precision",
                "fp16",
                "-o",
                str(tmp_path / "engines"),
                "--remote",
                "nvidia@orin.local",
            ]
        )
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    local = tmp_path / "engines" / "orin-nx" / "lut-fp16"
    remote = device / "lutfuse-bundles" / "orin-nx" / "lut-fp16"
    assert (remote / "build.sh").is_file() and (remote / "lut.engine").is_file()
    assert (local / "lut.engine").read_bytes() == (remote / "lut.engine").read_bytes()
    m = read_manifest(local / "manifest.json")
    assert m["status"] == "built" and m["tensorrt_version"] == "10.3.0" and m["compute_capability"] == "8.7"
    assert m["engine_sha256"] == hashlib.sha256((local / "lut.engine").read_bytes()).hexdigest()
    assert m["onnx_sha256"] == hashlib.sha256(lut.read_bytes()).hexdigest()
    assert m["layer_report"] == "lut.layers.json"  # the per-layer report comes back with the engine
    assert (local / "lut.layers.json").read_bytes() == (remote / "lut.layers.json").read_bytes()
    assert f"built remotely: {local / 'lut.engine'}" in out
    log = (tmp_path / "log").read_text().splitlines()
    assert log[0] == "ssh nvidia@orin.local mkdir -p lutfuse-bundles/orin-nx"
    assert log[1].startswith("scp -q -r ") and log[1].endswith("nvidia@orin.local:lutfuse-bundles/orin-nx/")
    assert log[2] == "ssh nvidia@orin.local cd lutfuse-bundles/orin-nx/lut-fp16 && ./build.sh"
    assert any(line.startswith("fake trtexec --onnx=lut.onnx") for line in log)


def test_remote_build_failure_is_one_clear_error(
    tmp_path: Path, device: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRTEXEC_RC", "5")
    lut = make_onnx(tmp_path / "lut.onnx")
    with pytest.raises(EngineError, match=r"build.sh on nvidia@orin failed \(exit 5\)"):
        eb.build_engine(
            eb.BuildRequest(
                onnx=lut, target="orin-nx", precision="fp16", out_root=tmp_path / "e", remote="nvidia@orin"
            )
        )
    assert not (tmp_path / "e" / "orin-nx" / "lut-fp16" / "lut.engine").exists()


def test_remote_engine_that_does_not_match_its_manifest_is_refused(tmp_path: Path, device: Path) -> None:
    lut = make_onnx(tmp_path / "lut.onnx")
    # a device whose scp corrupts the engine on the way back
    scp = Path(os.environ["PATH"].split(os.pathsep)[0]) / "scp"
    scp.write_text(
        FAKE_SCP.replace(
            'cp -r "${args[@]}"',
            'cp -r "${args[@]}"; case "${args[-1]}" in *.engine) echo junk >> "${args[-1]}";; esac',
        )
    )
    with pytest.raises(EngineError, match="lut.engine does not match its manifest"):
        eb.build_engine(
            eb.BuildRequest(
                onnx=lut, target="orin-nx", precision="fp16", out_root=tmp_path / "e", remote="orin"
            )
        )
    folder = tmp_path / "e" / "orin-nx" / "lut-fp16"
    assert (
        not (folder / "lut.engine").exists() and read_manifest(folder / "manifest.json")["status"] == "bundle"
    )


def test_missing_ssh_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh anywhere
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "no GPU"))
    lut = make_onnx(tmp_path / "lut.onnx")
    with pytest.raises(EngineError, match="ssh not found: --remote needs OpenSSH"):
        eb.build_engine(eb.BuildRequest(onnx=lut, target="orin-nx", out_root=tmp_path / "e", remote="orin"))


@pytest.mark.parametrize("remote", ["nvidia@orin.local", "orin", "me@10.0.0.7", "me@[fe80::1]", "jetson-01"])
def test_good_remote_names(remote: str) -> None:
    assert check_remote(remote) == remote


@pytest.mark.parametrize(
    "remote", ["-oProxyCommand=touch /tmp/x", "a b", "me@host;rm -rf ~", "", "me@", "host:/path"]
)
def test_bad_remote_names(remote: str) -> None:
    with pytest.raises(InputError, match="bad --remote"):
        check_remote(remote)


def test_identical_engine_is_not_rebuilt_remotely(tmp_path: Path, device: Path) -> None:
    lut = make_onnx(tmp_path / "lut.onnx")
    req = eb.BuildRequest(
        onnx=lut, target="orin-nx", precision="fp16", out_root=tmp_path / "e", remote="orin"
    )
    assert eb.build_engine(req).action == "remote-built"
    calls = (tmp_path / "log").read_text().count("./build.sh")
    assert eb.build_engine(req).action == "reused"
    assert (tmp_path / "log").read_text().count("./build.sh") == calls
    req.force = True
    assert eb.build_engine(req).action == "remote-built"
    assert (tmp_path / "log").read_text().count("./build.sh") == calls + 1
