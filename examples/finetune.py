"""Fine-tune a ProS backbone for facial expressions, attributes or landmarks, and say what pre-training contributed.

    python examples/finetune.py --task expression --model outputs/demo/backbone
    python examples/finetune.py --task landmarks --model outputs/demo/backbone --few_shot 0.05 --seeds 0 1 2 \
        --compare_random_init
    python examples/finetune.py --task all --model outputs/demo/backbone --few_shot 0.05 --seeds 0 1 2 \
        --compare_random_init          # the few-shot table: pre-trained vs random init on all three tasks
    python examples/finetune.py --task attributes --model org/pros-vitb --lora --push_to_hub \
        --hub_model_id org/pros-vitb-attributes-lora

With no data flag it uses the synthetic faces, face-cropped as `make demo` crops its pre-training images (rendered
once, then cached). Each (seed, initialisation) is one `Trainer` run; the script writes to `--output_dir`:
`results.json` (every metric per seed, mean and std, for the pre-trained backbone and with `--compare_random_init` the
same architecture at random initialisation), PNGs (confusion matrix, per-attribute accuracy, landmarks on test faces
and the CED curve), and the fine-tuned head of the first seed (or its LoRA adapter, with the merged head next to it in
`<output_dir>-merged`) with its image processor and a model card carrying the measured metrics. `--help` lists every
flag with why it matters.

The pieces are public in `pros_hf.finetuning`: `FinetuneArguments` (the flags), `load_finetune_backbone`,
`load_finetune_data`, `train_head` (one head, one seed), `run_task` (every seed of a task, its outputs) and
`run_finetuning` (every task).
"""

import logging
import sys
import time

from transformers import TrainingArguments

from pros_hf.cli import check_output_folder
from pros_hf.finetuning import (
    FinetuneArguments,
    FinetuneError,
    check_finetune_arguments,
    finetune_parser,
    run_finetuning,
    with_training_defaults,
)
from pros_hf.finetuning.reporting import format_comparison_table


def parse(argv: list[str]) -> tuple[FinetuneArguments, TrainingArguments]:
    """The flags, with this script's training defaults; a bad value or combination ends the run with one line."""
    try:
        args, training_args = finetune_parser().parse_args_into_dataclasses(args=with_training_defaults(argv))
        check_finetune_arguments(args, training_args, argv)
    except ValueError as error:  # the checks of both argument groups: a message, not a traceback
        raise SystemExit(f"finetune.py: {error}") from None
    check_output_folder("--output_dir", training_args.output_dir)
    return args, training_args


def main(argv: list[str] | None = None) -> dict:
    args, training_args = parse(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if training_args.should_log else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    start = time.perf_counter()
    try:
        results = run_finetuning(args, training_args)
    except FinetuneError as error:  # the model, the data or the output folder: named, before any training
        raise SystemExit(str(error)) from None
    print("\n" + format_comparison_table(results))
    print(f"\nFinished in {time.perf_counter() - start:.0f} s; outputs in {training_args.output_dir}")
    return results


if __name__ == "__main__":
    main()
