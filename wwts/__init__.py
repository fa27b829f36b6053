"""wwts: observable image recognition (CLI and settings; the model side is `pipeline`,
the observing side `telemetry`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wwts")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
