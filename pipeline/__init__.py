"""The model side of wwts: inputs, decoding, the four stages, the model registry, the
runtimes, and the one driver (`pipeline.driver.Pipeline`) with its dynamic batcher.

Nothing in this package knows about spans, log records or the CLI; the driver exposes
`Hooks` that `telemetry` implements from outside.
"""
