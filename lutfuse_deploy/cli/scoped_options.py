"""Options that apply to only some runs (videos, image pairs, MMDRFuse, one backend): one group each.

Every option of a group carries the group's click callback, which notes the options the user set;
once the command knows what it runs (after reading --ir/--vi/--out, after loading the model) it asks
each group ``refuse_unless(ctx, applies)``, and a set option that does not apply is refused with one
line naming it and why, instead of being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource


@dataclass(frozen=True)
class ScopedOptions:
    scope: str  # what the options are for: "videos (--ir, --vi and --out video files)"

    @property
    def _key(self) -> str:
        return f"scoped-options:{self.scope}"

    def mark(self, ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        """The click callback: remember the option when the user set it (even to its default)."""
        if param.name and ctx.get_parameter_source(param.name) not in (None, ParameterSource.DEFAULT):
            flag = isinstance(param, click.Option) and param.is_flag
            name = param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]
            ctx.meta.setdefault(self._key, []).append(name if flag else f"{name} {value}")
        return value

    def given(self, ctx: click.Context) -> list[str]:
        return list(ctx.meta.get(self._key, []))

    def refuse_unless(self, ctx: click.Context, applies: bool, here: str) -> None:
        """One ``InputError`` naming every option of the group that was set, when it does not apply."""
        from lutfuse_deploy.errors import InputError

        given = self.given(ctx)
        if given and not applies:
            raise InputError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for {self.scope}; {here}")


VIDEO = ScopedOptions("videos (--ir, --vi and --out video files)")
IMAGES = ScopedOptions("image pairs (--ir and --vi images or folders)")
MMDRFUSE = ScopedOptions("MMDRFuse models (their tanh output)")
OPENVINO = ScopedOptions("--backend openvino")
TORCH = ScopedOptions("--backend torch")
