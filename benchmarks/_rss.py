"""Peak resident memory of the current process, for the benchmarks' child processes.

``/proc/self/status`` ``VmHWM`` (Linux): the high-water mark of this process's own address space,
which starts fresh at ``exec``. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not used where
``VmHWM`` exists: Linux carries it over ``execve`` from the address space the child was forked
from, so a child of a large benchmark process (``python -m benchmarks`` runs them all in one)
reports the parent's peak.
"""

from __future__ import annotations


def peak_kib() -> int:
    """Peak resident set size of this process in KiB (VmHWM; ``ru_maxrss`` where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
