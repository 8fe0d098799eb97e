"""Settings that depend on the host: the backbone's dtype (``model.dtype: auto``) and torch's
thread count. Each choice is printed in one line with its reason.

Why a probe and not a flag check: whether bfloat16 is fast on a CPU depends on the CPU (AVX-512
bf16 or AMX), on the kernels torch was built with and on ``ATEN_CPU_CAPABILITY`` /
``ONEDNN_MAX_CPU_ISA``; a CPU without native bfloat16 matmul runs a reference kernel 50x slower
than float32. Timing one matmul at the backbone's own shapes answers all of these at once, in
about a second.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from tallrec_pl.errors import TallrecError
from tallrec_pl.status import status

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
PROBE_TOKENS = 512  # rows of the probe matmul: a micro-batch of a few prompts
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")

Probe = Callable[[torch.dtype, tuple[int, int, int]], float]


@functools.cache
def matmul_gflops(dtype: torch.dtype, shape: tuple[int, int, int]) -> float:
    """GFLOP/s of ``(m x k) @ (k x n)`` in ``dtype`` on this CPU: one warm-up, then repeats for at
    least 0.1 s (a slow reference kernel gets a single timed call)."""
    m, k, n = shape
    rng = torch.Generator().manual_seed(0)  # its own generator: a probe must not move the global RNG
    a = torch.randn(m, k, generator=rng).to(dtype)
    b = torch.randn(k, n, generator=rng).to(dtype)
    start = time.perf_counter()
    torch.mm(a, b)
    if time.perf_counter() - start > 0.2:  # a reference kernel: time one more call, no more
        start = time.perf_counter()
        torch.mm(a, b)
        return 2 * m * k * n / (time.perf_counter() - start) / 1e9
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < 0.1 or calls < 2:
        torch.mm(a, b)
        calls += 1
    return 2 * m * k * n * calls / elapsed / 1e9


@dataclass(frozen=True)
class DtypeChoice:
    """The backbone's dtype and why; the two probe figures where a CPU probe decided it."""

    dtype: str
    reason: str
    requested: str = "auto"
    gflops: dict[str, float] | None = None

    def line(self) -> str:
        figures = ""
        if self.gflops:
            figures = " (" + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in self.gflops.items()) + ")"
        return f"model.dtype {self.requested} -> {self.dtype}: {self.reason}{figures}"


def probe_shape(hidden: int, intermediate: int) -> tuple[int, int, int]:
    """The MLP's up projection at a micro-batch's token count: the backbone's largest matmul kind."""
    return (PROBE_TOKENS, hidden, intermediate)


def choose_dtype(
    requested: str, device: torch.device, shape: tuple[int, int, int], probe: Probe | None = None
) -> DtypeChoice:
    """Resolve ``model.dtype`` for ``device``. ``auto`` takes the fastest precision the hardware
    really runs; an explicit dtype is kept, with a warning on a CPU where it runs slower than float32."""
    if requested not in DTYPE_CHOICES:
        raise TallrecError(f"model.dtype {requested!r} is not supported", f"use one of {', '.join(DTYPE_CHOICES)}")
    if device.type == "cuda":
        return _cuda_choice(requested, device)
    if device.type != "cpu":
        dtype = "float32" if requested == "auto" else requested
        return DtypeChoice(dtype, f"{device.type} device: no probe, float32 unless asked", requested)
    if requested == "float32":
        return DtypeChoice("float32", "as configured", requested)
    other = "bfloat16" if requested == "auto" else requested
    probe = probe or matmul_gflops
    gflops = {"float32": probe(torch.float32, shape), other: probe(DTYPES[other], shape)}
    ratio = gflops["float32"] / max(gflops[other], 1e-9)
    at = f"at {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]}"
    if requested != "auto":
        if ratio > 1.1:
            status(
                f"warning: model.dtype {requested} on this CPU runs matmuls {ratio:.1f}x slower than float32 "
                f"({gflops[other]:.1f} vs {gflops['float32']:.1f} GFLOP/s {at}; no native {requested} here): "
                "expect a run about that much slower; use model.dtype: auto or float32"
            )
        return DtypeChoice(requested, "as configured", requested, gflops)
    if ratio <= 1.0:
        return DtypeChoice(
            "bfloat16", f"bfloat16 matmul at least as fast as float32 on this CPU {at}", requested, gflops
        )
    return DtypeChoice(
        "float32", f"bfloat16 matmul {ratio:.1f}x slower than float32 on this CPU {at}", requested, gflops
    )


def _cuda_choice(requested: str, device: torch.device) -> DtypeChoice:
    name = torch.cuda.get_device_name(device)
    if requested != "auto":
        return DtypeChoice(requested, f"as configured ({name})", requested)
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return DtypeChoice("bfloat16", f"{name} runs bfloat16 natively", requested)
    major, _ = torch.cuda.get_device_capability(device)
    if major >= 7:
        return DtypeChoice("float16", f"{name} has float16 tensor cores but no bfloat16", requested)
    return DtypeChoice("float32", f"{name} has neither bfloat16 nor float16 tensor cores", requested)


# --- threads -------------------------------------------------------------------------------


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def physical_cores() -> int:
    """Cores this process may use: the CPUs in its affinity mask counted once per physical core
    (SMT siblings share one core's FMA units), capped by a cgroup CPU quota (containers)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as fh:
                cores.add(fh.read().strip())
        except OSError:
            cores.add(str(cpu))
    quota = cgroup_cpu_quota()
    return max(1, min(len(cores), quota) if quota else len(cores))


def cgroup_cpu_quota() -> int | None:
    """Whole CPUs of a cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) quota, if one is set."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return max(1, int(quota) // int(period))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period = int(fh.read())
        return max(1, quota // period) if quota > 0 else None
    except (OSError, ValueError):
        return None


USER_THREADS = "TALLREC_USER_THREADS"  # which thread variable the user set ("" none), for Lightning's DDP ranks
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def user_threads() -> str | None:
    """OMP_NUM_THREADS or MKL_NUM_THREADS, whichever the user set (None: neither). Lightning's DDP
    launcher sets OMP_NUM_THREADS itself before it starts the other ranks (logical CPUs / ranks:
    SMT siblings counted as cores), so a rank reads what the run's first process recorded
    (``user_threads_recorded``) instead of its own environment."""
    if USER_THREADS in os.environ:
        return os.environ[USER_THREADS] or None
    return next((v for v in THREAD_VARIABLES if os.environ.get(v)), None)


@contextlib.contextmanager
def user_threads_recorded() -> Iterator[None]:
    """Record ``user_threads()`` in the environment the ranks inherit, for as long as the command runs."""
    if USER_THREADS in os.environ:  # a rank: the first process recorded it
        yield
        return
    os.environ[USER_THREADS] = user_threads() or ""
    try:
        yield
    finally:
        os.environ.pop(USER_THREADS, None)


def local_ranks() -> int:
    """Processes of this job on this node as torchrun says (LOCAL_WORLD_SIZE), else 1. SLURM binds
    each task to its own CPUs (``--cpus-per-task``), which ``physical_cores`` already counts; the
    ranks Lightning's own DDP launcher starts are counted by ``callbacks.ThreadsPerRank``."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def set_threads(ranks: int | None = None) -> str:
    """Give torch one thread per usable physical core, shared out among the ``ranks`` processes of
    this node (default ``local_ranks()``), unless the user chose (OMP_NUM_THREADS, MKL_NUM_THREADS
    or an earlier ``torch.set_num_threads``); more threads than cores spin against each other
    (docs/BENCHMARKS.md, host settings). Returns the line that says what was done."""
    cores = physical_cores()
    ranks = max(1, ranks or local_ranks())
    want = max(1, cores // ranks)
    now = torch.get_num_threads()
    user = user_threads()
    if user:
        return f"torch threads {now} ({user} set; {cores} usable physical cores)"
    why = "one per usable physical core"
    if ranks > 1:
        why = f"{cores} usable physical cores / {ranks} ranks on this node"
    if now != want:
        torch.set_num_threads(want)
        return f"torch threads {now} -> {want} ({why})"
    return f"torch threads {now} ({why})"


def configure_host() -> str:
    """Set torch's threads (``set_threads``) and describe the host in one line: CPU model, the ISA
    flags that decide precision speed, any forcing of torch's kernels, the threads, the GPU."""
    flags = cpu_flags()
    isa = " ".join(f for f in ISA_FLAGS if f in flags) or "none of " + "/".join(ISA_FLAGS)
    forced = [f"{v}={os.environ[v]}" for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(v)]
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"host {cpu_model()}, {physical_cores()} cores, {isa}"
        f"{' (forced: ' + ' '.join(forced) + ')' if forced else ''}; {set_threads()}{gpu}"
    )
