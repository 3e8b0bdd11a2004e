"""Options several commands share, defined once so their names, choices and help agree, and how an
option meets what a model has built in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lutfuse_deploy.runtime.base import Runner

ir16_option = click.option(
    "--ir16", type=click.Choice(["refuse", "minmax", "percentile", "linear"]), default="refuse", show_default=True,
    help="16-bit IR: refuse, or map to 8 bits (per-frame min-max, 1-99th percentile stretch, or linear "
    "v*255/65535), the same mapping in every command; use the mode the fused images were made with.")


def graph_tanh_map(runner: Runner, requested: str, explicit: bool) -> str:
    """The mapping to apply: a uint8 graph's built-in one (said in a note), or the one asked for."""
    from lutfuse_deploy.runtime.base import output_tanh_map

    mapping, note = output_tanh_map(runner, requested, explicit)
    if note:
        click.echo(f"note: {note}", err=True)
    return mapping
