"""The one-command demo (``fieldmq demo``): a broker, a simulated fleet, ingest with
anomaly detection, the live dashboard and a scripted outage, ending with the loss audit."""

from .run import DemoConfig, DemoResult, register, run_demo

__all__ = ["DemoConfig", "DemoResult", "register", "run_demo"]
