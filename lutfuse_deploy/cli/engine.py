"""``lutfuse-deploy build-engine`` and ``lutfuse-deploy targets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.options import ir16_option

if TYPE_CHECKING:
    from lutfuse_deploy.engines.build import BuildResult

BUILD_EPILOG = """\b
Builds here when this machine has TensorRT and a GPU with the target's compute capability;
otherwise writes a build bundle (ONNX, manifest.json, build.sh with the toolkit and trtexec lines)
to ENGINES/<target>/<model>-<precision>/ to run on the device, or builds it there with --remote.
Sizes are WIDTHxHEIGHT (640x480 is 640 wide, 480 high), as in profile --resolutions and demo --size.
Takes the default `lutfuse-deploy export` graph (float32) as it is.
\b
Examples:
  lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut.onnx
  lutfuse-deploy build-engine --onnx lut.onnx --target orin-nx --precision fp16
  lutfuse-deploy build-engine --onnx lut.onnx --target auto --shapes 128x128:640x480:1920x1080
  lutfuse-deploy build-engine --onnx lut.onnx --target orin-nx --precision int8 --calib msrs
  lutfuse-deploy build-engine --onnx lut.onnx --target h100 --precision int8 --qdq --calib msrs \
      --int8-tolerance p99=4,max=32,float=0.5
  lutfuse-deploy build-engine --onnx lut.onnx --target orin-nx --remote nvidia@orin.local
"""


@cli.command("build-engine", epilog=BUILD_EPILOG)
@click.option("--onnx", "onnx_path", required=True, type=click.Path(path_type=Path), help="Exported .onnx.")
@click.option("--target", required=True, help="Target name (see `targets`), a target YAML, or auto.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8", "best"]),
    default=None,
    help="Default: the target's default_precision.",
)
@click.option(
    "--shapes",
    default=None,
    metavar="MIN:OPT:MAX",
    help="Image-size profile, each WIDTHxHEIGHT, e.g. 320x240:640x480:1920x1080 (one WxH = static). "
    "Default: the target's.",
)
@click.option(
    "--calib",
    default=None,
    metavar="LIST|DIR|NPZ|NAME",
    help="INT8 calibration data: calibration/NAME.txt, a list file, a folder with ir/ and vi/, or calib.npz.",
)
@ir16_option
@click.option(
    "--workspace",
    "workspace_gib",
    type=float,
    default=None,
    metavar="GiB",
    help="Builder workspace limit. Default: the target's workspace_gib.",
)
@click.option(
    "-o",
    "--out",
    "out_root",
    type=click.Path(path_type=Path),
    default=Path("engines"),
    show_default=True,
    help="Root folder for engines and bundles.",
)
@click.option(
    "--remote",
    default=None,
    metavar="USER@HOST",
    help="Copy the bundle there over ssh, build, fetch the engine.",
)
@click.option(
    "--dla", "dla_core", type=int, default=None, metavar="CORE", help="Build for this DLA core (Jetson)."
)
@click.option(
    "--qdq", is_flag=True, help="INT8 via explicit Q/DQ nodes inserted here (required on TensorRT 11)."
)
@click.option(
    "--check-data",
    default=None,
    metavar="LIST|DIR|NPZ|NAME",
    help="INT8 --qdq: pairs to measure the Q/DQ graph on against float32 (as --calib; never the calibration "
    "pairs). Default: the last 4 pairs of --calib (at most a quarter), held out of calibration.",
)
@click.option(
    "--int8-tolerance",
    default=None,
    metavar="p99=N,max=N,float=S",
    help="INT8 --qdq: the error allowed against float32 in 8-bit steps (p99 and worst value), and the share of "
    "layers the sensitive-layer search may keep in float to get there. Default: p99=4,max=32,float=0.5.",
)
@click.option(
    "--version-compatible",
    is_flag=True,
    help="Let later TensorRT versions load the engine (may be slower); recorded in manifest.json.",
)
@click.option(
    "--hardware-compat",
    type=click.Choice(["none", "same-cc", "ampere+"]),
    default="none",
    show_default=True,
    help="Also run on other GPUs: same-cc (same compute capability) or ampere+ (discrete, sm 8.0+).",
)
@click.option("--name", default=None, help="Model name for the output folder (default: the ONNX file stem).")
@click.option(
    "--force", is_flag=True, help="Rebuild even when an identical engine exists; replace one built for other shapes."
)
@click.option("--require-build", is_flag=True, help="Fail instead of writing a bundle (used by build.sh).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--triton", "triton_repo", type=click.Path(path_type=Path), default=None, metavar="REPO",
              help="Also write a Triton model repository: REPO/<name>/config.pbtxt, 1/model.plan, 1/manifest.json.")
def build_engine_cmd(
    onnx_path: Path,
    target: str,
    precision: str | None,
    shapes: str | None,
    calib: str | None,
    ir16: str,
    workspace_gib: float | None,
    out_root: Path,
    remote: str | None,
    dla_core: int | None,
    qdq: bool,
    check_data: str | None,
    int8_tolerance: str | None,
    version_compatible: bool,
    hardware_compat: str,
    name: str | None,
    force: bool,
    require_build: bool,
    as_json: bool,
    triton_repo: Path | None,
) -> None:
    """Build a TensorRT engine for a target device, or a bundle to build it on the device."""
    from lutfuse_deploy.engines.build import BuildRequest, NotBuildableHere, build_engine
    from lutfuse_deploy.errors import EngineError

    engine_here = triton_repo is not None and remote is None  # --triton needs an engine, not a bundle
    if triton_repo is not None:  # everything --triton needs is checked before anything is built or written
        from lutfuse_deploy.export.triton import check_model_name, model_config_pb2

        model_config_pb2()
        check_model_name(name or onnx_path.stem)
    try:
        result = build_engine(BuildRequest(
            onnx=onnx_path,
            target=target,
            precision=precision,
            shapes=shapes,
            calib=calib,
            ir16=ir16,
            workspace_gib=workspace_gib,
            out_root=out_root,
            remote=remote,
            dla_core=dla_core,
            qdq=qdq,
            force=force,
            require_build=require_build or engine_here,
            name=name,
            version_compatible=version_compatible,
            hardware_compat=hardware_compat,
            check_data=check_data,
            int8_tolerance=int8_tolerance,
            progress=None if as_json else lambda msg: click.echo(msg, err=True),
        ))
    except NotBuildableHere as exc:
        if not engine_here or require_build:
            raise
        raise EngineError(f"--triton needs a built engine, and {exc}; nothing written (build on the device and "
                          "pass --triton there, or add --remote USER@HOST)") from None
    if triton_repo is not None:
        _triton(result, onnx_path, triton_repo, name)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    m = result.manifest
    for note in result.notes:
        click.echo(f"note: {note}")
    if isinstance(m.get("int8_check"), dict):
        from lutfuse_deploy.engines.int8_report import summary

        click.echo(summary(m["int8_check"]))
    if result.action == "bundle":
        click.echo(f"no engine built here: {result.reason}")
        click.echo(f"bundle: {result.folder}")
        click.echo(
            f"  {m['precision']} for {m['target']} (sm {m['compute_capability']}, TensorRT "
            f"{m['tensorrt_major']}.x), shapes {_shapes(m)}, onnx sha256 {m['onnx_sha256'][:16]}..."
        )
        click.echo(f"on the device: {result.device_command}")
        click.echo("or from here:  the same build-engine command with --remote USER@HOST")
        return
    verb = {"built": "built", "reused": "reused", "remote-built": "built remotely"}[result.action]
    click.echo(f"{verb}: {result.engine} ({result.reason})")
    click.echo(
        f"  {m['precision']}, TensorRT {m['tensorrt_version']}, {m['gpu_name']} (sm {m['compute_capability']}), "
        f"shapes {_shapes(m)}"
    )
    if m.get("layer_report") and result.engine is not None:
        click.echo(f"  per-layer report: {result.engine.parent / str(m['layer_report'])}")


def _triton(result: BuildResult, onnx_path: Path, repo: Path, name: str | None) -> None:
    """``--triton REPO``: the built engine, its manifest and a config.pbtxt (needs an engine, not a bundle)."""
    from lutfuse_deploy.errors import EngineError
    from lutfuse_deploy.export.triton import engine_repository

    if result.engine is None:  # checked before the build; a remote run that fetched no engine lands here
        raise EngineError(f"--triton needs a built engine; this run left a bundle in {result.folder}")
    folder = engine_repository(result.engine, result.manifest, onnx_path, repo, name or onnx_path.stem)
    click.echo(f"wrote Triton model {folder} (config.pbtxt, 1/model.plan, 1/manifest.json)", err=True)


def _shapes(m: dict[str, object]) -> str:
    from lutfuse_deploy.engines.build import shapes_text

    return f"{shapes_text(m.get('shapes'))} (WxH)"


CHECK_EPILOG = """\b
The bundle's build.sh runs it after building an INT8 Q/DQ engine. --int8 FILE checks another file of
the bundle instead, e.g. its Q/DQ graph in ONNX Runtime (the numbers build-engine printed).
\b
Examples:
  lutfuse-deploy check-int8 engines/h100/lut-int8
  lutfuse-deploy check-int8 engines/h100/lut-int8 --int8 lut.qdq.onnx
"""


@cli.command("check-int8", epilog=CHECK_EPILOG)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--int8", "int8_file", default=None, metavar="FILE",
              help="File in the bundle to check (default: the engine its manifest names).")
def check_int8_cmd(bundle: Path, int8_file: str | None) -> None:
    """Compare an INT8 bundle's engine with its float32 ONNX on the bundled check pairs; record the row."""
    from lutfuse_deploy.engines.int8_report import check_bundle, summary

    manifest, _report = check_bundle(bundle, int8_file)
    click.echo(summary(manifest["int8_check"]))


@cli.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def targets_cmd(as_json: bool) -> None:
    """List the deployment targets (recipes/targets/*.yaml)."""
    from lutfuse_deploy.engines.targets import list_targets

    targets = list_targets()
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in targets], indent=2))
        return
    from rich.table import Table

    from lutfuse_deploy.cli.tables import print_table

    table = Table(title="deployment targets (latencies: published, not measured here)")
    for col in (
        "target",
        "sm",
        "TensorRT",
        "memory GB",
        "DLA",
        "precisions",
        "default",
        "shapes WxH",
        "published",
    ):
        table.add_column(col, overflow="fold", no_wrap=col == "target")  # fold, never cut, when narrow
    for t in targets:
        anchors = "; ".join(f"{a.model} {a.width}x{a.height} {a.latency_ms:g} ms" for a in t.anchors) or "-"
        table.add_row(
            t.name,
            t.compute_capability,
            f"{t.tensorrt_major}.x",
            "/".join(f"{m:g}" for m in t.memory_gb) or "-",
            str(t.dla_cores),
            " ".join(t.precisions),
            t.default_precision,
            str(t.default_shapes),
            anchors,
        )
    print_table(table)
