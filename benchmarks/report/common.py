"""What the report's sections share: reading a result file, the machine line of a table, and matplotlib."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

from benchmarks.common import RESULTS, ROOT

DOCS = ROOT / "docs"
NOT_MEASURED = ["Not measured yet.", ""]

# Results written before benchmarks.common.machine() existed: the 2-core AMD EPYC these benchmarks ran on
# (its flags as /proc/cpuinfo lists them), torch's native AVX-512 kernels.
LEGACY_MACHINE = {
    "cpu": "AMD EPYC",
    "cores": 2,
    "isa": {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_bf16": False, "amx_tile": False},
    "torch_cpu_capability": "AVX512",
    "forced": {},
    "gpu": None,
}


def load(name: str) -> dict | None:
    """``benchmarks/results/NAME`` parsed, or None when that benchmark has not written it yet."""
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def load_all(folder: str, skip: str | None = None) -> list[dict]:
    """Every result file in ``benchmarks/results/FOLDER`` (one a run) but the one named ``skip``, in name order."""
    return [json.loads(p.read_text()) for p in sorted((RESULTS / folder).glob("*.json")) if p.name != skip]


def per_cpu_path(name: str) -> tuple[str, ...]:
    """The result files of ``name`` measured natively and on the forced float32-only path."""
    return tuple(f"{name}-{tag}.json" for tag in ("native", "forced-avx2"))


def from_results(*names: str) -> Callable[[Callable[[list[dict]], list[str]]], Callable[[], list[str]]]:
    """Make a section of the result files NAMES: it gets those present, parsed, and the page leaves it out
    while none is."""

    def wrap(make: Callable[[list[dict]], list[str]]) -> Callable[[], list[str]]:
        @functools.wraps(make)
        def section() -> list[str]:
            found = [r for r in map(load, names) if r]
            return make(found) if found else []

        return section

    return wrap


def from_result(name: str) -> Callable[[Callable[[dict], list[str]]], Callable[[], list[str]]]:
    """Make a section of the one result file NAME (see from_results)."""

    def wrap(make: Callable[[dict], list[str]]) -> Callable[[], list[str]]:
        @functools.wraps(make)
        def of_the_one(found: list[dict]) -> list[str]:
            return make(found[0])

        return from_results(name)(of_the_one)

    return wrap


def machine_text(info: dict | None) -> str:
    """One line for a table's caption: CPU, cores, flags present and absent, forcing, GPU."""
    info = info or LEGACY_MACHINE
    isa = info["isa"]
    have = ", ".join(f for f, on in isa.items() if on) or "none"
    lack = ", ".join(f for f, on in isa.items() if not on)
    forced = info.get("forced") or {}
    path = (
        f"float32-only path forced ({' '.join(f'{k}={v}' for k, v in forced.items())}; torch kernels "
        f"{info.get('torch_cpu_capability')})"
        if forced
        else f"native kernels ({info.get('torch_cpu_capability')})"
    )
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']}, {info['cores']} cores, flags {have}{'; no ' + lack if lack else ''}; {path}{gpu}"


def pyplot():
    """matplotlib's pyplot on the file-only backend (imported late: `--check` draws nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, name: str) -> None:
    """Write ``fig`` beside docs/BENCHMARKS.md as NAME and free it."""
    fig.tight_layout()
    fig.savefig(DOCS / name, dpi=120)
    pyplot().close(fig)
