"""Thread settings and the description of the machine a benchmark ran on.

Thread pools must be sized before numpy/BLAS and ONNX Runtime start, so the command line re-runs
itself with these variables set when they are missing (see `__main__`).
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

# One thread per query is faster than two on the 2-core machine this runs on (measured; the
# second core is better used by another request or, in the quality part, another backend).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "SBIR_THREADS": "1"}
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "faiss-cpu", "torch", "pillow")


def threads_pinned() -> bool:
    """True when this process was started with the benchmark's thread settings."""
    return all(os.environ.get(k) == v for k, v in THREAD_ENV.items())


def pinned_env() -> dict[str, str]:
    """This process's environment with the benchmark's thread settings (for child processes)."""
    return {**os.environ, **THREAD_ENV}


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1/5/15-minute load: other work on the machine makes every timing slower."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def memory_gib() -> float | None:
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    """Installed versions of the libraries the numbers depend on (absent ones left out)."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def describe() -> dict[str, Any]:
    """What a reader needs to know to interpret the timings."""
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "memory_gib": memory_gib(),
            "os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "load_average_at_start": load_average(), "onnxruntime_providers": providers,
            "thread_env": {k: os.environ.get(k) for k in THREAD_ENV}, "versions": versions(),
            "executable": sys.executable}
