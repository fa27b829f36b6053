"""The model side of wwts: a registry of models and the four stages that run them.

Nothing in this package knows about spans or log records; `pipeline.runner` exposes
hooks that `telemetry` plugs into from outside.
"""
