"""Reports a person runs without Grafana, read-only against the platform's Prometheus.

python -m mlplatform.report gpu-usage --prometheus http://localhost:9090 --since 7d --price-per-gpu-hour 2.50
"""

from .gpu_usage import TeamHours, UsageReport, collect, csv_text, table_text
from .prometheus import Prometheus, PrometheusError, Sample

__all__ = ["Prometheus", "PrometheusError", "Sample", "TeamHours", "UsageReport", "collect", "csv_text", "table_text"]
