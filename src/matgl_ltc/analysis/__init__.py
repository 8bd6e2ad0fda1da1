"""Metrics, correlation tables, calibration and figures."""

from .metrics import METRIC_NAMES, regression_metrics

__all__ = ["METRIC_NAMES", "regression_metrics"]
