"""Render speed of the embedded synthetic faces, on one core.

    python benchmarks/bench_synthetic.py [--num 600] [--image_size 128] [--repeats 3] [--output_json PATH]

Prints images/s of the numpy path (`synthetic_faces_arrays`: render only) and of the `datasets` path
(`make_synthetic_faces`: render + JPEG/PNG encode + Arrow): best and median wall-clock rate of the repeats, and
images per CPU-second (robust when other processes share the core). The thread count of
numpy / torch is pinned to 1 so the figure is per core. The target is >= 300 images/s at 128 px.
"""

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import statistics  # noqa: E402
import time  # noqa: E402

from argument_checks import at_least  # noqa: E402  (benchmarks/argument_checks.py)
from output_json import add_output_json_argument, check_output_json, write_output_json  # noqa: E402

from pros_hf.data.synthetic import make_synthetic_faces, synthetic_faces_arrays  # noqa: E402


def _rate(fn, num, repeats):
    """Wall-clock rates (best, median) and the best CPU-time rate, which other users of a shared core do not skew."""
    rates, cpu_rates = [], []
    for r in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn(num, seed=r)
        rates.append(num / (time.perf_counter() - start))
        cpu_rates.append(num / (time.process_time() - cpu))
    return max(rates), statistics.median(rates), max(cpu_rates)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=at_least(1), default=600, help="Images per timed run.")
    parser.add_argument("--image_size", type=at_least(1), default=128)
    parser.add_argument("--repeats", type=at_least(1), default=3, help="Timed runs; the machine may be shared, so best and "
                        "median are both reported.")  # fmt: skip
    add_output_json_argument(parser)
    args = parser.parse_args(argv)
    check_output_json(parser, args.output_json)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    size = args.image_size
    synthetic_faces_arrays(8, image_size=size)  # warm-up (imports, caches)
    make_synthetic_faces(8, image_size=size)
    cases = {
        "arrays (render only)": lambda n, seed: synthetic_faces_arrays(n, image_size=size, seed=seed),
        "dataset, jpeg": lambda n, seed: make_synthetic_faces(n, image_size=size, seed=seed),
        "dataset, png": lambda n, seed: make_synthetic_faces(n, image_size=size, seed=seed, image_format="png"),
    }
    rows = []
    for name, fn in cases.items():
        best, median, cpu = _rate(fn, args.num, args.repeats)
        print(f"{name:22s} {size}px: best {best:6.1f} images/s, median {median:6.1f} images/s, "
              f"per CPU-second {cpu:6.1f} ({args.repeats} x {args.num} images, 1 core)")  # fmt: skip
        rows.append(
            {
                "case": name,
                "best_images_per_second": best,
                "median_images_per_second": median,
                "images_per_cpu_second": cpu,
            }
        )
    if args.output_json:
        settings = {key: value for key, value in vars(args).items() if key != "output_json"}
        write_output_json(args.output_json, "synthetic", __file__, argv, {"settings": settings, "rows": rows})


if __name__ == "__main__":
    main()
