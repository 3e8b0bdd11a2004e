"""Latency profiling: interleaved timing of several backends, budgets as a gate, reports.

``timing`` measures, ``cuda`` adds the GPU lanes, ``inputs`` makes the frames, ``gate`` checks
budgets, ``report`` writes tables, JSON and plots, ``session`` ties one run together for the CLI.
"""

from lutfuse_deploy.profile.gate import Budget, Check, evaluate, load_budgets
from lutfuse_deploy.profile.timing import (
    Measurement,
    Resolution,
    Settings,
    Stats,
    parse_resolutions,
    summarize,
)

__all__ = [
    "Budget",
    "Check",
    "Measurement",
    "Resolution",
    "Settings",
    "Stats",
    "evaluate",
    "load_budgets",
    "parse_resolutions",
    "summarize",
]
