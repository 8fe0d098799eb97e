"""Regenerate docs/BENCHMARKS.md and its plots from benchmarks/results/ (no model is run).

python -m benchmarks.report            # write the page and its plots (make benchmarks-doc)
python -m benchmarks.report --check    # exit 1 if the committed page is not what the results make
"""

from __future__ import annotations

import argparse

from benchmarks.report.common import DOCS
from benchmarks.report.page import page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare the page with docs/BENCHMARKS.md; draw nothing")
    check = parser.parse_args(argv).check
    text = page(draw=not check)
    out = DOCS / "BENCHMARKS.md"
    if check:  # the committed page must be what the committed results make
        if out.read_text() != text:
            raise SystemExit(
                "docs/BENCHMARKS.md differs from what `python -m benchmarks.report` makes of "
                "benchmarks/results/; run `make benchmarks-doc` and commit it"
            )
        print("docs/BENCHMARKS.md is up to date")
        return
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
