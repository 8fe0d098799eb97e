"""tallrec_pl/quiet.py: known third-party noise stays out of a real run's output."""

from __future__ import annotations

import pytest
from helpers import fit_process, run_args


@pytest.mark.slow
def test_third_party_noise_is_silenced(tiny_backbone, ml100k, tmp_path):
    """What tallrec_pl/quiet.py drops stays out of a real run's output; everything else still shows."""
    from tallrec_pl.quiet import RECORDS, WARNINGS

    # logger=true: Lightning's default logger, which is where its tensorboardX warning and tips come from
    done = fit_process(
        *run_args(tiny_backbone, ml100k, tmp_path / "run", "--trainer.logger=true", "--trainer.max_epochs=1")
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-2000:]
    heard = [m for _, m in WARNINGS if m in out] + [m for _, m in RECORDS if m in out]
    assert not heard, out[-3000:]
    assert "trainable LoRA parameters" in out  # the product's own lines still print
