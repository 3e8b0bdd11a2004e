"""Triton model repositories: config.pbtxt parses with tritonclient's own ModelConfig protobuf and names
the graph's real inputs and outputs (read here with onnx, independently of the writer), for the
shipped LUT-Fuse exported through the CLI, for crafted graphs, and for engines via build-engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from engines_helpers import make_onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lutfuse_deploy.cli import main
from lutfuse_deploy.engines import build as eb
from lutfuse_deploy.errors import ExportError
from lutfuse_deploy.export.triton import Tensor, engine_repository, onnx_repository, validate_config

TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.UINT8: "TYPE_UINT8"}


def _parse(folder: Path) -> Any:
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def _graph_io(path: Path) -> list[tuple[str, str, list[int]]]:
    g = onnx.load(str(path)).graph
    return [(v.name, TYPES[v.type.tensor_type.elem_type],
             [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
            for v in [*g.input, *g.output]]


def _config_io(cfg: Any) -> list[tuple[str, str, list[int]]]:
    return [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in [*cfg.input, *cfg.output]]


def test_export_cli_writes_a_repository_for_the_shipped_lutfuse(shipped_lutfuse_onnx: dict[str, Path]) -> None:
    folder = shipped_lutfuse_onnx["repo"] / "lut"
    cfg = _parse(folder)
    assert cfg.name == "lut" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 8
    graph = _graph_io(shipped_lutfuse_onnx["onnx"])
    assert [n for n, _, _ in graph] == ["ir", "vi", "fused"]
    assert _config_io(cfg) == [(n, t, dims[1:]) for n, t, dims in graph]  # batch is Triton's
    assert [list(t.dims) for t in cfg.input] == [[1, -1, -1], [3, -1, -1]]
    assert cfg.HasField("dynamic_batching") and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert (folder / "1" / "model.onnx").read_bytes() == shipped_lutfuse_onnx["onnx"].read_bytes()


@pytest.mark.parametrize("io", ["float", "uint8"])
def test_dtypes_and_static_sizes_come_from_the_graph(tmp_path: Path, io: str) -> None:
    src = make_onnx(tmp_path / "m.onnx", kind="mmdrfuse-student", io=io, static_hw=(48, 64))
    cfg = _parse(onnx_repository(src, tmp_path / "repo", name="mm", max_batch_size=4, instances=2))
    assert cfg.max_batch_size == 4 and cfg.instance_group[0].count == 2
    assert _config_io(cfg) == [(n, t, dims[1:]) for n, t, dims in _graph_io(src)]
    assert mc.DataType.Name(cfg.input[0].data_type) == ("TYPE_UINT8" if io == "uint8" else "TYPE_FP32")
    assert list(cfg.input[1].dims) == [1, 48, 64]


def test_a_static_batch_gets_no_triton_batching(tmp_path: Path) -> None:
    src = make_onnx(tmp_path / "m.onnx")
    model = onnx.load(str(src))
    for v in [*model.graph.input, *model.graph.output]:
        v.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(src))
    cfg = _parse(onnx_repository(src, tmp_path / "repo"))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert _config_io(cfg) == _graph_io(src)


def test_rewriting_replaces_the_model_folder_whole(tmp_path: Path) -> None:
    src = make_onnx(tmp_path / "m.onnx")
    folder = onnx_repository(src, tmp_path / "repo")
    (folder / "1" / "stale.txt").write_text("from an older export")
    onnx_repository(src, tmp_path / "repo")
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx"]
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["m"]


def test_validation_rejects_configs_that_do_not_match_or_parse() -> None:
    ins = [Tensor("ir", "TYPE_FP32", (-1, 1, -1, -1))]
    outs = [Tensor("fused", "TYPE_FP32", (-1, 3, -1, -1))]
    good = ('name: "m" platform: "onnxruntime_onnx" max_batch_size: 2 '
            'input { name: "ir" data_type: TYPE_FP32 dims: [1, -1, -1] } '
            'output { name: "fused" data_type: TYPE_FP32 dims: [3, -1, -1] }')
    assert validate_config(good, ins, outs).max_batch_size == 2
    with pytest.raises(ExportError, match="differ from the graph"):
        validate_config(good.replace('"ir"', '"input"'), ins, outs)
    with pytest.raises(ExportError, match="does not parse"):
        validate_config(good.replace("max_batch_size", "max_batch"), ins, outs)
    with pytest.raises(ExportError, match="dynamic leading"):
        validate_config(good, [Tensor("ir", "TYPE_FP32", (1, 1, -1, -1))], outs)


def _manifest(w: tuple[int, int], h: tuple[int, int]) -> dict[str, Any]:
    return {"precision": "fp16", "shapes": {"min": {"width": w[0], "height": h[0]},
                                            "opt": {"width": w[0], "height": h[0]},
                                            "max": {"width": w[1], "height": h[1]}}}


@pytest.mark.parametrize("static", [True, False])
def test_engine_repository_is_batch_one_with_the_profiles_sizes(tmp_path: Path, static: bool) -> None:
    src = make_onnx(tmp_path / "lut.onnx")
    engine = tmp_path / "lut-fp16.engine"
    engine.write_bytes(b"PLAN")
    manifest = _manifest((640, 640), (480, 480)) if static else _manifest((320, 1920), (240, 1080))
    folder = engine_repository(engine, manifest, src, tmp_path / "repo", name="lut")
    cfg = _parse(folder)
    hw = [480, 640] if static else [-1, -1]
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 0
    assert _config_io(cfg) == [("ir", "TYPE_FP32", [1, 1, *hw]), ("vi", "TYPE_FP32", [1, 3, *hw]),
                               ("fused", "TYPE_FP32", [1, 3, *hw])]
    assert (folder / "1" / "model.plan").read_bytes() == b"PLAN"
    assert json.loads((folder / "1" / "manifest.json").read_text()) == manifest


def _build_engine_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(["build-engine", *args])
    return int(exc.value.code or 0)


def test_build_engine_triton_needs_a_built_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = make_onnx(tmp_path / "lut.onnx")
    monkeypatch.setattr(eb, "local_capability", lambda target: (None, None, "TensorRT is not installed here"))
    code = _build_engine_cli("--onnx", str(src), "--target", "orin-nx", "-o", str(tmp_path / "engines"),
                             "--triton", str(tmp_path / "repo"))
    err = capsys.readouterr().err
    assert code == 1 and "error: --triton needs a built engine, and cannot build for orin-nx here" in err
    assert err.count("\n") == 1 and "nothing written" in err
    assert not (tmp_path / "repo").exists() and not (tmp_path / "engines").exists()  # refused before any bundle
    code = _build_engine_cli("--onnx", str(src), "--target", "orin-nx", "-o", str(tmp_path / "engines"),
                             "--triton", str(tmp_path / "repo"), "--name", "bad name")
    assert code == 1 and "Triton model name 'bad name'" in capsys.readouterr().err
    assert not (tmp_path / "engines").exists()


def test_export_triton_without_o_writes_only_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --triton the repository is the output: -o is optional, and nothing else is written."""
    import torch

    from lutfuse_deploy.io.checkpoints import save_checkpoint
    from lutfuse_deploy.models import create_model

    monkeypatch.setenv("LUTFUSE_DATA", str(tmp_path / "no-data"))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("mmdrfuse-student").eval(), tmp_path / "ckpt" / "student.safetensors")
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", str(ckpt), "--triton", "repo"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "wrote Triton model repo/student" in out
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "ckpt/student.safetensors", "repo/student/1/model.onnx", "repo/student/config.pbtxt"]
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", str(ckpt)])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: give -o FILE.onnx, or --triton REPO")


def test_build_engine_triton_writes_plan_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The builder is replaced by one that returns a built engine (none can be built without a GPU)."""
    src = make_onnx(tmp_path / "lut.onnx")
    engine = tmp_path / "built.engine"
    engine.write_bytes(b"PLAN")
    manifest = {**_manifest((320, 1920), (240, 1080)), "tensorrt_version": "10.3.0", "gpu_name": "Orin",
                "compute_capability": "8.7"}
    seen: list[Any] = []

    def fake_build(request: Any) -> Any:
        seen.append(request)
        return eb.BuildResult("built", tmp_path, manifest, "built here", engine)

    monkeypatch.setattr(eb, "build_engine", fake_build)
    code = _build_engine_cli("--onnx", str(src), "--target", "orin-nx", "--triton", str(tmp_path / "repo"))
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "repo" / "lut"
    assert _parse(folder).platform == "tensorrt_plan" and seen[0].onnx == src
    assert (folder / "1" / "model.plan").read_bytes() == b"PLAN"
    assert json.loads((folder / "1" / "manifest.json").read_text())["gpu_name"] == "Orin"
