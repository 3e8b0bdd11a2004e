"""The ``lutfuse-deploy`` command line: each command parses, calls one library function, prints.

Every ``LutfuseError`` becomes one ``error: ...`` line on stderr and a non-zero exit status; no
traceback reaches the user. Command modules import only click at the top; heavy libraries load inside.
"""

from __future__ import annotations

import sys

import click

from lutfuse_deploy import __version__
from lutfuse_deploy.errors import LutfuseError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lutfuse-deploy")
def cli() -> None:
    """Infrared-visible image fusion, from checkpoint to per-device inference engine.

    \b
    Typical flow (paths as in a checkout beside ../shared; more examples in each command's --help):
      lutfuse-deploy import-official lutfuse --lut ../shared/reference/lutfuse_official/fine_tuned_lut.npy \\
          --context ../shared/reference/lutfuse_official/generator_context.pth -o lut.safetensors
      lutfuse-deploy fuse --model lut.safetensors --ir ../shared/data/ivif/msrs_test/ir \\
          --vi ../shared/data/ivif/msrs_test/vi --out fused
      lutfuse-deploy evaluate --ir ../shared/data/ivif/msrs_test/ir --vi ../shared/data/ivif/msrs_test/vi \\
          --fused fused --json metrics.json
      lutfuse-deploy export --model lut.safetensors -o lut.onnx
      lutfuse-deploy build-engine --onnx lut.onnx --target orin-nx --precision fp16
      lutfuse-deploy profile --model lut.safetensors --backend torch --model lut.onnx --backend onnxruntime \\
          --resolutions 640x480
    """


# Command modules register themselves on ``cli``; listed here so the order of --help is stable.
_COMMAND_MODULES = ("models", "fuse", "evaluate", "profile", "engine", "demo", "train", "export", "calibrate")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"lutfuse_deploy.cli.{name}")


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group, turning our errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="lutfuse-deploy", standalone_mode=False)
    except LutfuseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # usage errors too: one line, with where to read more
        click.echo(f"error: {_usage_message(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # a write outside atomic_path, or an unreadable input: one line, no traceback
        from lutfuse_deploy.io.files import os_reason

        if exc.filename2:  # a copy or rename: the second name is where it was going
            click.echo(f"error: {exc.filename2}: {os_reason(exc)} (from {exc.filename})", err=True)
        else:
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{os_reason(exc)}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("error: out of memory; use a smaller image or a machine with more memory", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)


def _usage_message(exc: click.ClickException) -> str:
    """click's message on one line; for a usage error, the command whose --help explains it."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        return f"{message} (see: {ctx.command_path} --help)"
    return message
