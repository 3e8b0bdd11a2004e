"""Tables on stdout: a terminal folds them to its width; a pipe or a log gets them whole.

rich fits a table to the console width, and a pipe's width is a guess (80, or COLUMNS): cells then
fold mid-word into rows nobody can read or grep. A pipe has no width to fit, so there the table is
printed at its natural width, one line per row.
"""

from __future__ import annotations

from typing import Any


def print_table(table: Any, console: Any = None) -> None:
    """Print a rich ``table`` on ``console`` (default: stdout), whole when it is not a terminal."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update(max_width=100_000)).maximum
        console = Console(file=console.file, width=max(natural, console.width), color_system=None)
    console.print(table)
