"""The checks every reach into a third-party package's internals passes first.

tallrec_pl patches transformers (model/lean.py), PEFT (model/dropout.py) and Lightning
(lightning_internals.py), and serve reaches into LitServe (serve/litserve_internals.py), where no
public hook does the job. Each patch checks the shape it relies on through ``require``: when
upstream has changed it, the run stops with one line that names the package, its version, the
version tested and the way around the patch, instead of training on a half-applied patch. A
version newer than the one tested is said once.
"""

from __future__ import annotations

import warnings
from functools import cache
from importlib.metadata import version

from packaging.version import Version

from tallrec_pl.errors import TallrecError

# the versions the test suite last passed with (setup.cfg's upper bounds allow their patch releases)
TESTED = {"transformers": "5.24.0", "peft": "0.21.2", "lightning": "2.6.6", "litserve": "0.2.19"}


def require(package: str, ok: bool, what: str, fix: str) -> None:
    """Stop with one line when ``ok`` is false: ``package`` no longer has ``what``."""
    untested(package)
    if not ok:
        raise TallrecError(
            f"{package} {version(package)} has changed {what}, which tallrec_pl patches (tested with "
            f"{package} {TESTED[package]})",
            f"pip install '{package}=={TESTED[package]}' or {fix}",
        )


@cache
def untested(package: str) -> bool:
    """Warn once when ``package`` is newer than the tested version; True if it is."""
    newer = Version(version(package)).release[:2] > Version(TESTED[package]).release[:2]
    if newer:
        warnings.warn(
            f"tallrec_pl was tested with {package} {TESTED[package]}, this is {version(package)}; "
            "its patches check what they rely on and stop if it has changed",
            stacklevel=3,
        )
    return newer
