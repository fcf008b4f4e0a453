"""Fine-tune a ProS backbone on a real face benchmark by its published protocol and print its row of FaRL's tables.

    python examples/benchmark.py --benchmark 300w --data_dir data/300W --model org/pros-vitb \
        --image_size 448 --output_dir outputs/bench/300w
    python examples/benchmark.py --benchmark celeba --data_dir data/CelebA --model org/pros-vitb \
        --data_ratio 0.01 --mode linear_probe --output_dir outputs/bench/celeba-1pct-probe
    python examples/benchmark.py --benchmark rafdb --data_dir data/RAF-DB --model org/pros-vitb --lora

Benchmarks: celeba, lfwa (attributes, mean accuracy), rafdb, affectnet7, affectnet8 (expressions, accuracy), 300w,
wflw, aflw19 (landmarks: NME under the benchmark's normalisations, FR and AUC at its threshold), each read from the
files its authors distribute (docs/benchmarks.md says where to get them and how the folder is laid out). Faces are
framed as the protocol frames them; a seeded --validation_fraction of the (--data_ratio) training images picks the
evaluation to keep, and every test subset is scored with both the last and the validation-selected weights. The
script writes `<output_dir>/benchmark.json` (settings, validation history, every subset's figures for both) and
prints one row with the validation-selected figures. `--help` lists every flag with why it matters; the recipe flags
(--mode, --lora, --backbone_lr_scale, ...) are examples/finetune.py's.

The pieces are public in `pros_hf.benchmarks`: `parse_benchmark_arguments`, `run_benchmark`, `format_row`.
"""

import logging
import sys

from pros_hf.benchmarks import BenchmarkFormatError, format_row, parse_benchmark_arguments, run_benchmark
from pros_hf.finetuning import FinetuneError


def main(argv: list[str] | None = None) -> dict:
    try:
        args, recipe, training_args = parse_benchmark_arguments(list(sys.argv[1:] if argv is None else argv))
    except ValueError as error:  # a bad value or combination of flags: a message, not a traceback
        raise SystemExit(f"benchmark.py: {error}") from None
    logging.basicConfig(
        level=logging.INFO if training_args.should_log else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = run_benchmark(args, recipe, training_args)
    except (BenchmarkFormatError, FinetuneError) as error:  # the folder, the model: named, before any training
        raise SystemExit(f"benchmark.py: {error}") from None
    print("\n" + format_row(result))
    selected, last = result["selected"]["step"], result["last"]["step"]
    print(
        f"\nValidation-selected step {selected} of {last} ({result['settings']['selection_metric']}); the last "
        f"step's figures and every subset are in {training_args.output_dir}/benchmark.json"
    )
    return result


if __name__ == "__main__":
    main()
