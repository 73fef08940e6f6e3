"""The evaluation step: what a model version gets right and wrong, per split and per group
(:func:`evaluate_model`, ``jobs/evaluate.py``)."""

from lakeloop.evaluation.model import evaluate_model

__all__ = ["evaluate_model"]
