"""The CPUs a process may use: the machine's count, its affinity and its cgroup's quota, and
the runtimes' default threads following them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.providers import cpus
from app.providers.cpus import cgroup_cpu_quota, usable_cpus


def test_a_v2_quota_is_read_from_the_own_cgroup_then_the_root(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, {"": "/"}) is None  # no limit
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path, {"": "/"}) == 1.5
    nested = tmp_path / "system.slice" / "app.scope"
    nested.mkdir(parents=True)
    (nested / "cpu.max").write_text("200000 100000\n")
    assert cgroup_cpu_quota(tmp_path, {"": "/system.slice/app.scope"}) == 2.0
    # a container sees its own cgroup at the mount's root, under the host's path name
    assert cgroup_cpu_quota(tmp_path, {"": "/docker/abc"}) == 1.5


def test_a_v1_quota_and_unreadable_files(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path, {"cpu": "/"}) is None
    (cpu / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_cpu_quota(tmp_path, {"cpu": "/"}) == 0.5
    (cpu / "cpu.cfs_period_us").write_text("garbage\n")
    assert cgroup_cpu_quota(tmp_path, {"cpu": "/"}) is None
    assert cgroup_cpu_quota(tmp_path / "missing", {}) is None


def test_usable_cpus_is_the_smallest_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(48)), raising=False)
    monkeypatch.setattr(cpus, "_own_cgroup_paths", lambda: {"": "/"})
    assert usable_cpus(tmp_path) == 48  # no quota: the affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(tmp_path) == 2  # a container of 1.5 CPUs: 2 threads can run
    (tmp_path / "cpu.max").write_text("10000 100000\n")
    assert usable_cpus(tmp_path) == 1
    assert usable_cpus() >= 1  # this machine, whatever it is


def test_llama_cpp_threads_follow_the_usable_cpus(load_llama: Callable[..., Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import app.providers.llama_cpp as llama_module

    monkeypatch.setattr(cpus, "usable_cpus", lambda: 6)  # as a 6-CPU container would
    monkeypatch.setattr(llama_module, "usable_cpus", cpus.usable_cpus)
    params = load_llama().llm.context_params
    assert (params.n_threads, params.n_threads_batch) == (3, 6)
    params = load_llama(n_threads=1, n_threads_batch=2).llm.context_params
    assert (params.n_threads, params.n_threads_batch) == (1, 2)  # the row's own win


def test_transformers_threads_and_their_memory_follow_the_usable_cpus(
        tiny_hf_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from app.memory_estimate import TORCH_THREAD_OVERHEAD, estimate_row
    from app.providers.hf_transformers import TransformersProvider

    before = torch.get_num_threads()
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 6)
    row = TransformersProvider.row_for(str(tiny_hf_folder), device="cpu", parallel=1)
    one = TransformersProvider.row_for(str(tiny_hf_folder), device="cpu", parallel=1, threads=1)
    e3, e1 = estimate_row(row), estimate_row(one)
    assert e3 is not None and e1 is not None
    assert e3.overhead - e1.overhead == 2 * TORCH_THREAD_OVERHEAD
    model = TransformersProvider().load(row)
    try:
        assert torch.get_num_threads() == 3
    finally:
        model.close()
        torch.set_num_threads(before)
