"""``make quality``: the shipped models against the official releases and simple baselines.

``python -m lutfuse_deploy.quality`` (``run``) fuses the held-out sets with every model, scores the
outputs (``results``) and writes ``docs/quality.md`` (``report``) and ``docs/quality.png``
(``figure``). The modules import downwards only: run -> report, figure -> results.
"""
