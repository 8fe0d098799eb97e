"""How long building every TALLRec split from the 100,000-rating MovieLens log takes.

python -m benchmarks.data_build    # writes benchmarks/results/data_build.json
"""

from __future__ import annotations

import statistics
import time

from benchmarks.common import RESULTS, arguments, save_json
from tallrec_pl.data import RecDataModule


def main() -> None:
    times, sizes = [], {}
    for _ in range(5):
        start = time.perf_counter()
        splits = RecDataModule().build_samples(sampled=False)  # read, window, split, render all 10,000 prompts
        texts = {name: [s.to_json() for s in samples] for name, samples in splits.items()}
        times.append(time.perf_counter() - start)
        sizes = {name: len(t) for name, t in texts.items()}
    result = {"seconds_median": statistics.median(times), "seconds_all": times, "samples": sizes, "ratings": 100_000}
    save_json(RESULTS / "data_build.json", result)
    print(f"all splits ({sizes}) built in {result['seconds_median']:.2f} s (median of 5)")


if __name__ == "__main__":
    arguments(__doc__).parse_args()  # no options: --help says what it measures
    main()
