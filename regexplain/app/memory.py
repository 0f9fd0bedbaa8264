"""How much memory the explorer's server holds: Voilà and every kernel it started (psutil).

``pss`` (proportional set size) counts a page shared by ``n`` processes once in total, ``1/n`` in each:
the machine's real cost of the process tree. ``rss`` counts shared pages (torch's libraries, mapped by
every kernel) once per process, so its sum overstates the total; both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TreeMemory:
    rss_mb: float        # sum of resident set sizes
    pss_mb: float        # sum of proportional set sizes (shared pages split between their processes)
    processes: int       # the server and its descendants (kernels)

    def __str__(self) -> str:
        return f"{self.pss_mb:.0f} MB PSS ({self.rss_mb:.0f} MB RSS summed) in {self.processes} processes"


def tree_memory(pid: int) -> TreeMemory:
    """Memory of process ``pid`` and all its descendants (processes that end meanwhile are skipped)."""
    import psutil

    root = psutil.Process(pid)
    rss = pss = 0.0
    count = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)  # pss is Linux's; elsewhere the RSS is the best one has
        count += 1
    return TreeMemory(rss / 2**20, pss / 2**20, count)
