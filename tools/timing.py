"""The timing helper of the measurement scripts in tools/ (each imports it as ``timing``)."""

import statistics
import time


def median_time(call, runs):
    """Median wall time of ``runs`` calls of ``call()``, in seconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
