"""Resource snapshots (CPU, RAM, GPU via NVML) taken by a background sampler.

Stage spans and records read the latest snapshot, a dict copy, instead of making
system calls on the hot path. No GPU, no driver, or no pynvml means no GPU figures,
never an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psutil


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_percent: float | None
    temperature_c: float | None


@dataclass(frozen=True)
class Snapshot:
    process_cpu_percent: float
    process_rss_bytes: int
    system_memory_used_bytes: int
    system_memory_percent: float
    gpus: tuple[GpuReading, ...] = field(default_factory=tuple)

    # Both views are derived once per snapshot (every sampler interval), not once per span
    # or record: a snapshot is read by four stage spans and a record per image. Callers
    # must not mutate them (the SDK copies attributes; the formatter only reads).

    @cached_property
    def span_attributes(self) -> dict[str, Any]:
        """Semantic-convention names where they exist, `wwts.resource.*` otherwise."""
        attributes: dict[str, Any] = {
            "process.cpu.utilization": round(self.process_cpu_percent / 100.0, 4),
            "process.memory.usage": self.process_rss_bytes,
            "system.memory.usage": self.system_memory_used_bytes,
            "system.memory.utilization": round(self.system_memory_percent / 100.0, 4),
        }
        for gpu in self.gpus:
            prefix = f"wwts.resource.gpu.{gpu.index}."
            attributes[prefix + "name"] = gpu.name
            attributes[prefix + "memory_used_bytes"] = gpu.memory_used_bytes
            attributes[prefix + "memory_total_bytes"] = gpu.memory_total_bytes
            if gpu.utilization_percent is not None:
                attributes[prefix + "utilization_percent"] = gpu.utilization_percent
            if gpu.temperature_c is not None:
                attributes[prefix + "temperature_c"] = gpu.temperature_c
        return attributes

    @cached_property
    def record_fields(self) -> dict[str, Any]:
        """The same figures as ECS-document fields under `wwts.resource`."""
        return {
            "process": {"cpu_percent": self.process_cpu_percent, "rss_bytes": self.process_rss_bytes},
            "system": {
                "memory_used_bytes": self.system_memory_used_bytes,
                "memory_percent": self.system_memory_percent,
            },
            "gpu": [gpu.__dict__ for gpu in self.gpus],
        }

    @property
    def max_gpu_temperature(self) -> float | None:
        temperatures = [g.temperature_c for g in self.gpus if g.temperature_c is not None]
        return max(temperatures) if temperatures else None


class Nvml:
    """pynvml, initialised once; silently empty where there is no NVIDIA driver."""

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._names: list[str] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                self._handles.append(handle)
                self._names.append(name.decode() if isinstance(name, bytes) else str(name))
        except Exception:  # no library, no driver, no device: all mean "no GPU figures"
            self._handles = []

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def driver_version(self) -> str | None:
        if not self._handles:
            return None
        try:
            version = self._nvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else str(version)
        except Exception:
            return None

    def read(self) -> tuple[GpuReading, ...]:
        readings = []
        for index, handle in enumerate(self._handles):
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                utilization = _optional(lambda: float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                temperature = _optional(
                    lambda: float(self._nvml.nvmlDeviceGetTemperature(handle, self._nvml.NVML_TEMPERATURE_GPU))
                )
                readings.append(
                    GpuReading(index, self._names[index], int(memory.used), int(memory.total), utilization, temperature)
                )
            except Exception:
                continue
        return tuple(readings)


def _optional(read: Any) -> float | None:
    try:
        return read()
    except Exception:
        return None


class ResourceSampler:
    """Refreshes a `Snapshot` every `interval` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.5, nvml: Nvml | None = None) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first call always answers 0.0
        self._nvml = nvml or Nvml()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest = self.sample()

    def sample(self) -> Snapshot:
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            cpu = self._process.cpu_percent(None)
            rss = self._process.memory_info().rss
        return Snapshot(cpu, rss, int(memory.used), float(memory.percent), self._nvml.read())

    def start(self) -> ResourceSampler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="wwts-resources", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.latest = self.sample()
            except Exception:  # a vanished /proc entry must not kill the sampler
                continue
