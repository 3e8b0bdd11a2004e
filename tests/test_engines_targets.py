"""Targets are data: the shipped YAMLs load, bad ones fail naming the key, --target auto picks by GPU."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from lutfuse_deploy.engines import local_gpu as lg
from lutfuse_deploy.engines import targets as tg
from lutfuse_deploy.errors import ConfigError, EngineError, InputError

SHIPPED = {
    "orin-nx": "8.7",
    "orin-nano": "8.7",
    "agx-orin": "8.7",
    "rtx-4060ti": "8.9",
    "rtx-3090": "8.6",
    "a100": "8.0",
    "h100": "9.0",
}


def test_shipped_targets_load_with_their_compute_capability() -> None:
    loaded = {t.name: t for t in tg.list_targets()}
    assert set(SHIPPED) <= set(loaded)
    for name, cc in SHIPPED.items():
        t = loaded[name]
        assert t.compute_capability == cc
        assert t.path is not None and t.path.stem == name  # file name and name key agree
        assert t.default_precision in t.precisions
        assert t.tensorrt_major in (10, 11)


def test_orin_nx_is_jetpack6_trt10_with_dla_that_cannot_run_gridsample() -> None:
    t = tg.load_target("orin-nx")
    assert (t.compute_capability, t.tensorrt_major) == ("8.7", 10)
    assert t.memory_gb == (8.0, 16.0)
    assert t.integrated and t.dla_cores > 0
    assert "GridSample" in t.dla_unsupported_ops
    assert "10.3" in t.software


def test_published_anchors_are_the_design_doc_numbers_and_say_so() -> None:
    nx = {(a.width, a.height): a for a in tg.load_target("orin-nx").anchors}
    assert nx[(640, 480)].latency_ms == pytest.approx(18.23)
    assert nx[(1280, 720)].latency_ms == pytest.approx(30.54)
    ti = {(a.width, a.height): a.latency_ms for a in tg.load_target("rtx-4060ti").anchors}
    assert ti == {
        (640, 480): pytest.approx(4.70),
        (800, 600): pytest.approx(8.20),
        (1280, 1024): pytest.approx(23.20),
    }
    for t in tg.list_targets():
        for a in t.anchors:
            assert "paper" in a.source


def test_jetson_tensorrt_lines_and_no_trt11_target_offers_best() -> None:
    for t in tg.list_targets():
        if t.tensorrt_major == 11:
            assert "best" not in t.precisions
    # JetPack 6 ships TensorRT 10.3 on every Orin; TensorRT 11.4 (JetPack 7.2.2+) supports AGX Orin only
    assert {t.name: t.tensorrt_major for t in tg.list_targets() if t.integrated} == {
        "agx-orin": 10,
        "agx-orin-jp7": 11,
        "orin-nano": 10,
        "orin-nx": 10,
    }
    jp7 = tg.load_target("agx-orin-jp7")
    assert jp7.tensorrt_min == "11.4" and jp7.dla_cores == 2


def _base() -> dict[str, object]:
    return yaml.safe_load((tg.targets_dir() / "rtx-3090.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"compute_capability": "87"}, "compute_capability"),
        ({"compute_capability": 8.6}, "compute_capability: expected str"),
        ({"tensorrt_major": 9}, "tensorrt_major"),
        ({"tensorrt_major": True}, "tensorrt_major: expected int"),
        ({"precisions": ["fp32", "fp8"]}, "precisions: unknown precision 'fp8'"),
        ({"default_precision": "int4"}, "default_precision"),
        ({"default_shapes": "480x640:240x320:1080x1920"}, "default_shapes"),
        ({"memory_gb": [0]}, "memory_gb"),
        ({"workspace_gib": -1}, "workspace_gib"),
        ({"anchors": [{"model": "lutfuse", "width": 640}]}, "anchors[0]: missing key"),
        (
            {
                "anchors": [
                    {"model": "x", "width": 1, "height": 1, "latency_ms": 1, "source": "s", "gpu": "y"}
                ]
            },
            "anchors[0]: unknown key 'gpu'",
        ),
    ],
)
def test_bad_target_values_name_the_key(change: dict[str, object], needle: str) -> None:
    data = {**_base(), **change}
    with pytest.raises(ConfigError, match=None) as err:
        tg.target_from_dict(data, "t.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith("t.yaml: ")


def test_missing_required_key_is_named() -> None:
    data = _base()
    del data["tensorrt_major"]
    with pytest.raises(ConfigError, match="missing key 'tensorrt_major'"):
        tg.target_from_dict(data, "t.yaml")


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown target 'orin-xx'.*orin-nx"):
        tg.load_target("orin-xx")


def test_target_from_a_yaml_path(tmp_path: Path) -> None:
    data = {**_base(), "name": "lab-3090"}
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    assert tg.load_target(str(path)).name == "lab-3090"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # WIDTHxHEIGHT in, (height, width) inside
        ("320x240:640x480:1920x1080", ((240, 320), (480, 640), (1080, 1920))),
        ("640x480", ((480, 640),) * 3),
        (" 128X128 : 640x480 : 1280x1024", ((128, 128), (480, 640), (1024, 1280))),
    ],
)
def test_parse_shapes(text: str, expected: tuple[tuple[int, int], ...]) -> None:
    p = tg.parse_shapes(text)
    assert (p.min, p.opt, p.max) == expected
    assert tg.parse_shapes(str(p)) == p


@pytest.mark.parametrize(
    "text",
    [
        "",
        "480x640:1080x1920",
        "640:480:1",
        "480x640x3",
        "2x2",
        "480x640:240x640:1080x1920",
        "240x320:480x640:1080x300",
        "a:b:c",
    ],
)
def test_bad_shapes_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="bad shapes"):
        tg.parse_shapes(text)


# -- --target auto ---------------------------------------------------------------------------------


def _fake_nvidia_smi(folder: Path, line: str) -> None:
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{line}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_auto_picks_the_target_with_the_local_compute_capability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(tmp_path, "NVIDIA GeForce RTX 4060 Ti, 8.9")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = lg.detect_gpu()
    assert gpu is not None and (gpu.name, gpu.compute_capability, gpu.source) == (
        "NVIDIA GeForce RTX 4060 Ti",
        "8.9",
        "nvidia-smi",
    )
    assert lg.resolve_target("auto").name == "rtx-4060ti"


def test_auto_narrows_shared_compute_capability_by_name() -> None:
    all_targets = tg.list_targets()
    jetson = lg.LocalGpu("Orin", "8.7", "torch", "NVIDIA Jetson AGX Orin Developer Kit")
    assert lg.match_target(jetson, all_targets, tensorrt_major=10).name == "agx-orin"
    with pytest.raises(EngineError, match="several targets"):
        lg.match_target(jetson, all_targets)  # JetPack 6 or 7: the TensorRT major decides
    nx = lg.LocalGpu("Orin", "8.7", "torch", "NVIDIA Jetson Orin NX Engineering Reference Developer Kit")
    assert lg.match_target(nx, all_targets).name == "orin-nx"
    assert lg.match_target(jetson, all_targets, tensorrt_major=11).name == "agx-orin-jp7"
    with pytest.raises(EngineError, match="several targets have compute capability 8.7"):
        lg.match_target(lg.LocalGpu("Orin", "8.7", "torch"), all_targets)
    with pytest.raises(EngineError, match="no target has compute capability 7.5"):
        lg.match_target(lg.LocalGpu("Tesla T4", "7.5", "nvidia-smi"), all_targets)


def test_auto_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lg, "detect_gpu", lambda: None)
    with pytest.raises(EngineError, match="--target auto needs a local NVIDIA GPU"):
        lg.resolve_target("auto")
