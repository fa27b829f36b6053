"""What the pipeline answers for one input: the `Result` every front door renders and
every hook records. Durations are kept exact (integer nanoseconds); rounding is done once,
by whoever shows a figure."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.defaults import TOTAL


@dataclass(frozen=True)
class ImageInfo:
    """The facts of a decoded image (its pixels are gone by the time a result exists)."""

    md5: str
    bytes: int
    width: int
    height: int
    mode: str  # the file's own mode, before conversion to RGB
    format: str


@dataclass(frozen=True)
class Prediction:
    rank: int
    label: str
    score: float  # softmax probability, rounded to 4 decimals by postprocess
    class_id: int

    def as_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "label": self.label, "score": self.score, "class_id": self.class_id}


@dataclass(frozen=True)
class Upload:
    """An input that arrives as bytes (an HTTP body) instead of a path."""

    name: str  # what results call it: the uploaded file name, or "-"
    data: bytes


@dataclass
class Result:
    path: str  # the input as given, valid Unicode (shown in output and records)
    model: str
    file: str | None = None  # the absolute path of a local file; None for uploads
    image: ImageInfo | None = None
    predictions: list[Prediction] = field(default_factory=list)
    durations_ns: dict[str, int] = field(default_factory=dict)  # per stage, in the order run
    error: BaseException | None = None
    trace_id: str | None = None
    runtime: str | None = None  # set once the input reached the forward stage's runtime
    device: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_ns(self) -> int:
        """The time this input spent in its stages (waits between them excluded)."""
        return sum(self.durations_ns.values())

    def latency_ms(self, decimals: int = 3) -> dict[str, float]:
        """Per-stage and total milliseconds, each rounded once from the exact figure."""
        latency = {stage: round(ns / 1e6, decimals) for stage, ns in self.durations_ns.items()}
        latency[TOTAL] = round(self.total_ns / 1e6, decimals)
        return latency
