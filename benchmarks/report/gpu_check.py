"""docs/BENCHMARKS.md's GPU checks: the gpu-marked tests as benchmarks/gpu_check.sh last ran them
(results/gpu_check.log)."""

from __future__ import annotations

import re

from benchmarks.common import RESULTS


def section() -> list[str]:
    """The gpu-marked tests as benchmarks/gpu_check.sh last ran them (results/gpu_check.log)."""
    log = RESULTS / "gpu_check.log"
    if not log.exists():
        return []
    text = log.read_text()
    head = [x for x in text.splitlines()[:4] if x.strip()]
    passed = re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR) tests/test_gpu.py::(\w+)", text, re.M)
    diff = re.search(r"max \|p_yes gpu - cpu\| float32: (\S+)", text)
    summary = re.search(r"^=*\s*(\d+ passed.*?) in ([\d.]+)s", text, re.M)
    lines = [
        "## GPU checks",
        "",
        "Command: `bash benchmarks/gpu_check.sh` (log: benchmarks/results/gpu_check.log).",
        "",
    ]
    lines += [f"Machine: {head[1]}; {head[2]}; host CPU {head[3].split(':', 1)[-1].strip()}; run {head[0]}.", ""]
    lines += ["| test | result |", "| --- | --- |"] + [f"| {name} | {state} |" for state, name in passed]
    if summary:
        lines += ["", f"pytest: {summary.group(1).strip()} in {summary.group(2)} s."]
    if diff:
        lines += [
            "Largest |p(Yes) GPU - p(Yes) CPU| over 64 test prompts of the embedded backbone, float32, "
            f"TF32 off: {diff.group(1)}."
        ]
    return lines + [""]
