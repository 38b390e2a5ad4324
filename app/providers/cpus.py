"""How many CPUs this process may really use: the runtimes' default thread counts.

``os.cpu_count()`` is the machine's count.  In a container limited to 2 CPUs on a 64-core host
it says 64, and a runtime that starts a thread per core (torch's pool, llama.cpp's prompt
threads) runs 32-64 threads on 2 CPUs' time: they wait on each other and each holds its own
buffers.  This module takes the smallest of the machine's count, the process's CPU affinity and
the cgroup's CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process can run on at once (at least 1)."""
    count = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        count = min(count, len(os.sched_getaffinity(0)) or count)
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def decode_threads() -> int:
    """Threads for decoding when a row sets none: half the usable CPUs, as llama.cpp decodes.

    Decoding is bound by reading the weights, and a runtime's workers spin between operations:
    with every core theirs they fight the server's own threads and the clients on the same
    machine (measured with torch on 2 busy cores, ~15M model: 9 tok/s on two threads, 47 on one;
    tiny model 48 vs ~400 through the API)."""
    return max(1, usable_cpus() // 2)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT,
                     own: dict[str, str] | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5``: one and a half), None when
    there is none or it cannot be read (not Linux, no cgroup file system).  ``own``: the
    process's cgroup per controller ("" for v2), by default from ``/proc/self/cgroup``."""
    own = _own_cgroup_paths() if own is None else own
    for folder in _candidates(root, own.get("", "/"), ""):  # cgroup v2
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else _ratio(quota, period)
    for folder in _candidates(root, own.get("cpu", "/"), "cpu"):  # cgroup v1
        try:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            continue
        return None if quota.startswith("-") else _ratio(quota, period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _own_cgroup_paths() -> dict[str, str]:
    """This process's cgroup per controller from ``/proc/self/cgroup`` ("" is v2's)."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _candidates(root: Path, own: str, controller: str) -> list[Path]:
    """Where the controller's files may be: under the process's own cgroup (a host's view),
    then the mount's root (a container sees its own cgroup there)."""
    base = root / controller if controller else root
    folders = []
    if own.strip("/"):
        folders.append(base / own.strip("/"))
    folders.append(base)
    return folders
