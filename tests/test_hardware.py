"""Host-dependent settings: model.dtype auto decided by a matmul probe, explicit dtypes kept with
a warning where they run slow, torch threads per physical core."""

from __future__ import annotations

import os

import pytest
import torch

from tallrec_pl import hardware
from tallrec_pl.errors import TallrecError

SHAPE = (512, 576, 1536)
CPU = torch.device("cpu")


def probe_with(float32: float, other: float):
    calls = []

    def probe(dtype, shape):
        calls.append((dtype, shape))
        return float32 if dtype == torch.float32 else other

    return probe, calls


def test_auto_takes_float32_where_bfloat16_matmul_is_slow(capsys):
    probe, calls = probe_with(float32=61.0, other=1.1)  # a 2-core AVX2 CPU without AVX-512 bf16
    choice = hardware.choose_dtype("auto", CPU, SHAPE, probe)
    assert choice.dtype == "float32"
    assert {c[0] for c in calls} == {torch.float32, torch.bfloat16} and all(c[1] == SHAPE for c in calls)
    line = choice.line()
    assert "auto -> float32" in line and "55.5x slower" in line and "61.0 GFLOP/s" in line and "1.1 GFLOP/s" in line
    assert "\n" not in line


def test_auto_takes_bfloat16_where_it_is_at_least_as_fast():
    probe, _ = probe_with(float32=175.0, other=404.0)
    choice = hardware.choose_dtype("auto", CPU, SHAPE, probe)
    assert choice.dtype == "bfloat16" and "at least as fast" in choice.line()
    probe, _ = probe_with(float32=100.0, other=100.0)
    assert hardware.choose_dtype("auto", CPU, SHAPE, probe).dtype == "bfloat16"
    probe, _ = probe_with(float32=100.0, other=99.0)
    assert hardware.choose_dtype("auto", CPU, SHAPE, probe).dtype == "float32"


def test_explicit_dtype_wins_and_a_slow_one_is_warned_in_one_line(capsys):
    probe, _ = probe_with(float32=61.0, other=1.1)
    assert hardware.choose_dtype("bfloat16", CPU, SHAPE, probe).dtype == "bfloat16"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "55.5x slower than float32" in err[0] and "model.dtype: auto or float32" in err[0]
    probe, _ = probe_with(float32=175.0, other=404.0)
    assert hardware.choose_dtype("bfloat16", CPU, SHAPE, probe).dtype == "bfloat16"
    assert capsys.readouterr().err == ""
    probe, calls = probe_with(float32=1.0, other=1.0)
    assert hardware.choose_dtype("float32", CPU, SHAPE, probe).dtype == "float32" and calls == []  # nothing to probe


def test_unknown_dtype_is_refused_with_the_choices():
    with pytest.raises(TallrecError, match="auto, float32, bfloat16, float16"):
        hardware.choose_dtype("fp8", CPU, SHAPE)


def test_cuda_choice_follows_the_card(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Card")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: True)
    assert hardware.choose_dtype("auto", cuda, SHAPE).dtype == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (7, 5))
    assert hardware.choose_dtype("auto", cuda, SHAPE).dtype == "float16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (6, 1))
    assert hardware.choose_dtype("auto", cuda, SHAPE).dtype == "float32"
    assert hardware.choose_dtype("bfloat16", cuda, SHAPE).dtype == "bfloat16"


def test_real_probe_measures_both_dtypes():
    import math

    for dtype in (torch.float32, torch.bfloat16):
        gflops = hardware.matmul_gflops(dtype, (64, 64, 64))
        assert math.isfinite(gflops) and gflops > 0


def test_threads_follow_usable_cores_unless_the_user_chose(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr(hardware, "physical_cores", lambda: 1)
        torch.set_num_threads(3)
        assert "3 -> 1" in hardware.set_threads() and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(3)
        assert "OMP_NUM_THREADS set" in hardware.set_threads() and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_threads_are_shared_among_the_ranks_of_a_node(monkeypatch):
    before = torch.get_num_threads()
    try:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(hardware, "physical_cores", lambda: 8)
        assert hardware.local_ranks() == 1
        line = hardware.set_threads(ranks=2)
        assert torch.get_num_threads() == 4 and "-> 4 (8 usable physical cores / 2 ranks on this node)" in line
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # torchrun's count of this node's processes
        assert hardware.local_ranks() == 3 and "-> 2 (8 usable physical cores / 3 ranks" in hardware.set_threads()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # more ranks than cores: one thread each, never 0
        hardware.set_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "")
        assert hardware.local_ranks() == 1
    finally:
        torch.set_num_threads(before)


def test_a_ranks_threads_follow_what_the_user_set_not_what_lightning_set(monkeypatch):
    """Lightning's DDP launcher sets OMP_NUM_THREADS for its ranks (logical CPUs / ranks); only the
    user's own setting may stop tallrec_pl from sharing out the physical cores."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", hardware.USER_THREADS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the test process keeps its threads
    with hardware.user_threads_recorded():
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # Lightning's launcher, for itself and the ranks it starts
        assert hardware.user_threads() is None and "OMP_NUM_THREADS set" not in hardware.set_threads(ranks=2)
        with hardware.user_threads_recorded():  # a rank's own main(): the first process's record stands
            assert hardware.user_threads() is None
    assert hardware.USER_THREADS not in os.environ and hardware.user_threads() == "OMP_NUM_THREADS"
    with hardware.user_threads_recorded():  # the user set it: kept on every rank
        assert hardware.user_threads() == "OMP_NUM_THREADS" and "OMP_NUM_THREADS set" in hardware.set_threads(2)


def test_threads_per_rank_callback_divides_for_lightnings_own_launcher_only(monkeypatch):
    from types import SimpleNamespace

    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    from tallrec_pl.callbacks import ThreadsPerRank

    asked = []
    monkeypatch.setattr("tallrec_pl.callbacks.set_threads", lambda ranks: asked.append(ranks) or "line")
    monkeypatch.setattr("tallrec_pl.callbacks.local_ranks", lambda: 1)

    def trainer(devices: int, world: int, env) -> SimpleNamespace:
        return SimpleNamespace(num_devices=devices, world_size=world, strategy=SimpleNamespace(cluster_environment=env))

    ThreadsPerRank().setup(trainer(2, 2, LightningEnvironment()), None, "fit")
    ThreadsPerRank().setup(trainer(1, 1, LightningEnvironment()), None, "fit")  # one process: nothing to share
    ThreadsPerRank().setup(trainer(2, 4, SLURMEnvironment()), None, "fit")  # SLURM binds CPUs to each task
    assert asked == [2]
    monkeypatch.setattr("tallrec_pl.callbacks.local_ranks", lambda: 2)  # torchrun said so: already divided
    ThreadsPerRank().setup(trainer(2, 4, LightningEnvironment()), None, "fit")
    assert asked == [2]


def test_cgroup_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: 1)
    assert hardware.physical_cores() == 1
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: None)
    unlimited = hardware.physical_cores()
    assert unlimited <= len(os.sched_getaffinity(0))  # SMT siblings count once; never more than the usable CPUs
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: 4096)
    assert hardware.physical_cores() == unlimited  # a quota above the cores changes nothing


def test_host_line_names_the_cpu_and_its_flags(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    line = hardware.configure_host()
    assert "host " in line and "torch threads" in line and "forced: ATEN_CPU_CAPABILITY=avx2" in line


@pytest.mark.parametrize("bf16_gflops,expected", [(1.1, torch.float32), (400.0, torch.bfloat16)])
def test_module_loads_the_backbone_in_the_dtype_auto_resolves_to(
    tiny_backbone, monkeypatch, capsys, bf16_gflops, expected
):
    from tallrec_pl.model.module import TALLRecModule

    seen = []

    def probe(dtype, shape):
        seen.append(shape)
        return 61.0 if dtype == torch.float32 else bf16_gflops

    monkeypatch.setattr(hardware, "matmul_gflops", probe)
    module = TALLRecModule(backbone=tiny_backbone, dtype="auto")
    module.configure_model()
    assert module.model.get_base_model().model.embed_tokens.weight.dtype == expected
    assert seen[0] == (hardware.PROBE_TOKENS, 32, 64)  # the tiny backbone's hidden and MLP widths
    assert f"model.dtype auto -> {str(expected).removeprefix('torch.')}" in capsys.readouterr().err


def test_the_probe_leaves_the_global_rng_alone():
    """LoRA's initialisation draws from the global RNG right after the dtype is resolved: a probe
    that drew from it would make a seeded run depend on whether a probe ran (or was cached)."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    hardware.matmul_gflops(torch.float32, (8, 8, 9))  # a shape no other test probes: not cached
    assert torch.equal(torch.rand(3), expected)
