"""Resource snapshots (CPU, RAM, GPU via NVML) taken by a background sampler.

Stage spans and records read the latest snapshot, a dict copy, instead of making
system calls on the hot path. No GPU, no driver, or no pynvml means no GPU figures,
never an error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psutil

from pipeline.device import nvidia_driver_present
from telemetry.fields import put


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilization: float | None  # 0-1
    temperature_c: float | None


# Span attributes and record fields share these names: the semantic conventions define
# process.cpu.utilization, system.memory.* and hw.gpu.* only as metric names, which belong
# to the metrics; the snapshot on a span or record lives under wwts.resource.*.
PREFIX = "wwts.resource."
CPU_UTILIZATION = PREFIX + "process.cpu.utilization"  # 0-1 of all the machine's CPUs
RSS = PREFIX + "process.memory.rss"  # bytes
SYSTEM_MEMORY_USED = PREFIX + "system.memory.used"  # bytes
SYSTEM_MEMORY_UTILIZATION = PREFIX + "system.memory.utilization"  # 0-1
# one value per GPU, in NVML index order (arrays, so that every GPU shares one field)
GPU_COUNT = PREFIX + "gpu.count"
GPU_NAME = PREFIX + "gpu.name"
GPU_MEMORY_USED = PREFIX + "gpu.memory.used"
GPU_MEMORY_TOTAL = PREFIX + "gpu.memory.total"
GPU_UTILIZATION = PREFIX + "gpu.utilization"  # 0-1
GPU_TEMPERATURE = PREFIX + "gpu.temperature"  # °C


@dataclass(frozen=True)
class Snapshot:
    process_cpu_utilization: float  # 0-1 of all CPUs
    process_rss_bytes: int
    system_memory_used_bytes: int
    system_memory_utilization: float  # 0-1
    gpus: tuple[GpuReading, ...] = field(default_factory=tuple)

    # Both views are derived once per snapshot (every sampler interval), not once per span
    # or record: a snapshot is read by every stage span and record. Callers must not
    # mutate them (the SDK copies attributes; the formatter only reads).

    @cached_property
    def attributes(self) -> dict[str, Any]:
        """Flat `wwts.resource.*` attributes for a span."""
        attributes: dict[str, Any] = {
            CPU_UTILIZATION: self.process_cpu_utilization,
            RSS: self.process_rss_bytes,
            SYSTEM_MEMORY_USED: self.system_memory_used_bytes,
            SYSTEM_MEMORY_UTILIZATION: self.system_memory_utilization,
        }
        if self.gpus:
            attributes[GPU_COUNT] = len(self.gpus)
            attributes[GPU_NAME] = [g.name for g in self.gpus]
            attributes[GPU_MEMORY_USED] = [g.memory_used_bytes for g in self.gpus]
            attributes[GPU_MEMORY_TOTAL] = [g.memory_total_bytes for g in self.gpus]
            utilization = [g.utilization for g in self.gpus]
            temperature = [g.temperature_c for g in self.gpus]
            if None not in utilization:
                attributes[GPU_UTILIZATION] = utilization
            if None not in temperature:
                attributes[GPU_TEMPERATURE] = temperature
        return attributes

    @cached_property
    def fields(self) -> dict[str, Any]:
        """The same names as nested ECS-document fields."""
        document: dict[str, Any] = {}
        for name, value in self.attributes.items():
            put(document, tuple(name.split(".")), value)
        return document

    @property
    def max_gpu_temperature(self) -> float | None:
        temperatures = [g.temperature_c for g in self.gpus if g.temperature_c is not None]
        return max(temperatures) if temperatures else None


class Nvml:
    """pynvml, initialised once; silently empty where there is no NVIDIA driver."""

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._names: list[str] = []
        if not nvidia_driver_present():
            return
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

    def names(self) -> list[str]:
        return list(self._names)

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
                utilization = _optional(lambda: self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
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


MIN_CPU_INTERVAL_S = 0.1  # a CPU figure spans at least this much wall time (see `_utilization`)


class ResourceSampler:
    """Refreshes a `Snapshot` every `interval` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.5, nvml: Nvml | None = None) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._cpus = psutil.cpu_count() or 1
        self._cpu_at, self._cpu_used, self._cpu = time.monotonic(), self._used(), 0.0
        self._nvml = nvml or Nvml()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest = self.sample()

    def sample(self) -> Snapshot:
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            cpu = self._utilization()
            rss = self._process.memory_info().rss
        return Snapshot(cpu, rss, int(memory.used), round(memory.percent / 100.0, 4), self._nvml.read())

    def _used(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def _utilization(self) -> float:
        """CPU time used since the last figure over the wall time since then, as a share
        of all CPUs. The kernel counts CPU time in clock ticks (10 ms), so over a short
        interval a single tick reads as many CPUs' worth (psutil's `cpu_percent` answered
        2800 % on two cores right after its priming call): under MIN_CPU_INTERVAL_S the
        last figure stands, and a figure never exceeds 1."""
        now, used = time.monotonic(), self._used()
        if now - self._cpu_at >= MIN_CPU_INTERVAL_S:
            share = (used - self._cpu_used) / (now - self._cpu_at) / self._cpus
            self._cpu_at, self._cpu_used, self._cpu = now, used, round(min(max(share, 0.0), 1.0), 4)
        return self._cpu

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
