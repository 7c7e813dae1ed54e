"""CPU time of this process, split into user and system time.

System time here is mostly the kernel zeroing fresh pages for large temporaries; it varies
with the machine's memory state more than user time does, so benchmarks report both.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

__all__ = ["cpu_timer"]


def cpu_timer() -> Callable[[], dict[str, float]]:
    """Start a clock; calling the result gives the CPU seconds spent since, in total and split."""
    start, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

    def stop() -> dict[str, float]:
        now = resource.getrusage(resource.RUSAGE_SELF)
        user, system = now.ru_utime - start.ru_utime, now.ru_stime - start.ru_stime
        return {"fit_seconds": round(time.perf_counter() - wall, 3), "fit_cpu_seconds": round(user + system, 3),
                "fit_user_seconds": round(user, 3), "fit_sys_seconds": round(system, 3)}  # fmt: skip

    return stop
