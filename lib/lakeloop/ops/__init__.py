"""Operator tools: what a person runs against a lake, beside the pipeline's steps.

* :mod:`~lakeloop.ops.summary` — what the lake holds, in a few lines (``lakeloop show``).
* :mod:`~lakeloop.ops.pages` — the HTML page of a job run, from its JSON report (``lakeloop report``).
* :mod:`~lakeloop.ops.maintenance` — OPTIMIZE, VACUUM, old training sets, dead checkpoints (``lakeloop maintain``).
* :mod:`~lakeloop.ops.promotion` — champion and challenger: an alias moved through a gate (``lakeloop registry``).
* :mod:`~lakeloop.ops.explore` — notebook helpers: tables, images and results as frames and figures.

Each is plain functions; their command lines are :mod:`lakeloop.cli`.
"""
