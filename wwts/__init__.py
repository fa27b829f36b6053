"""wwts: observable image recognition (the front doors: CLI, HTTP service, settings; the
model side is `pipeline`, the observing side `telemetry`)."""

__version__ = "0.1.0"  # the package's version, read by setuptools at build time (pyproject.toml)
