"""`make demo`: the ProS pipeline end to end on data the project makes or a dependency ships, on a CPU, in minutes.

1. face-aware curation of real faces (scikit-image's LFW subset and photos) with examples/curate.py;
2. synthetic faces rendered with labels, and their face-dominant crops (the ProS premise);
3. pre-training of a micro ProS ViT on those crops with `accelerate launch examples/pretrain.py`, tracking the
   teacher's k-NN (backbone/training_curves.png);
4. DINO's weighted k-NN of the exported teacher against the same architecture at random initialisation;
5. what its CLS encodes: how far it moves when only the expression, background, pose, lighting or identity of a
   synthetic face changes, against random initialisation (examples/factor_sensitivity.py);
6. features of a real photo through AutoModel / AutoImageProcessor;
7. few-shot fine-tuning (5% of the labels) of expression, attribute and landmark heads on the exported backbone and on
   random initialisation, evaluated with the evaluate metrics (examples/finetune.py).

Everything lands in --output (default outputs/demo). Each step is one of the examples, run as a user would run it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# The pre-training recipe of the demo: a 0.2M-parameter ViT on 48-px crops for a CPU, trained on photometric views
# only. Measured on the synthetic faces (k-NN on 2,929 held-out crops, factor sensitivity and few-shot fine-tuning;
# README "Is pre-training learning?"):
# - no geometric augmentation but the flip: both global views are the whole face crop (scale 1, square) and no local
#   crops. With DINO's crops (0.4-1 global, 0.05-0.4 local, aspect 3/4-4/3) every recipe measured made the CLS 1.8-6x
#   less sensitive to expression than random weights are, and expression k-NN stayed at random init's level: the
#   few pixels an expression moves were learnt away with the crops' own geometric noise;
# - DINO's photometric augmentations (colour jitter, blur, solarize) with grayscale on every view: identity in these
#   faces is mostly colour, and colourless views leave shape (expression, pose, face) to tell images apart;
# - 80 epochs: expression k-NN rose from 15.2 (40 epochs) to 16.9 (random init: 14.6); no local crops make a step
#   cheap enough for it in the old recipe's time;
# - Sinkhorn targets: with centering the teacher settles on a few prototypes; Sinkhorn keeps most of the 64 in use;
# - teacher momentum 0.99 instead of 0.996: an EMA horizon of ~100 steps suits a short run;
# - 64 prototypes suit 2,000 images; clipping at 3.0 shrank every step 5-20x here, so it is off.
PRETRAIN_FLAGS = [
    "--preset", "micro", "--num_train_epochs", "80", "--per_device_train_batch_size", "64",
    "--global_crop_size", "48", "--num_local_crops", "0", "--num_prototypes", "64",
    "--target_mode", "sinkhorn", "--teacher_momentum", "0.99",
    "--learning_rate", "5e-4", "--max_grad_norm", "0", "--teacher_temperature", "0.04",
    "--augmentation_overrides", '{"global_crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "grayscale_p": 1.0}',
    "--logging_steps", "50", "--save_strategy", "epoch", "--save_total_limit", "1", "--report_to", "none",
    "--seed", "0",
]


def run(step: str, command: list[str]) -> None:
    print(f"\n=== {step}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"--- {step}: {time.perf_counter() - start:.0f} s", flush=True)


def make_face_crops(output: Path, num_train: int, num_eval: int) -> None:
    """Synthetic faces at 128 px, cropped around the detected face to 64 px (labels and landmarks kept): the
    fine-tuning data's defaults (`pros_hf.finetuning.data`), so `finetune.py` without data flags sees the
    same images."""
    from pros_hf.data import draw_contact_sheet
    from pros_hf.finetuning import synthetic_face_crops
    from pros_hf.finetuning.data import SYNTHETIC_TEST_SEED, SYNTHETIC_TRAIN_SEED

    for name, count, seed in (("faces_train", num_train, SYNTHETIC_TRAIN_SEED),
                              ("faces_eval", num_eval, SYNTHETIC_TEST_SEED)):
        # saved to output/name; earlier crops are reused only when they were made the same way
        crops, counts = synthetic_face_crops(count, seed, path=output / name, return_counts=True)
        if counts is None:
            continue
        print(f"{name}: {counts}")
        if name == "faces_train":
            draw_contact_sheet(crops.select(range(32)), columns=8).save(output / "faces_train_contact_sheet.png")


def photo_features(backbone: Path) -> None:
    import torch
    from skimage import data
    from transformers import AutoImageProcessor, AutoModel

    import pros_hf  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(backbone).eval()
    processor = AutoImageProcessor.from_pretrained(backbone)
    start = time.perf_counter()
    with torch.inference_mode():
        features = model(**processor(data.astronaut(), return_tensors="pt")).pooler_output
    print(f"AutoModel({type(model).__name__}) on skimage.data.astronaut(): pooler_output {tuple(features.shape)} "
          f"in {1000 * (time.perf_counter() - start):.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="outputs/demo")
    parser.add_argument("--num_train", type=int, default=2000, help="synthetic faces to pre-train on")
    parser.add_argument("--num_eval", type=int, default=3000, help=(
        "held-out synthetic faces for k-NN (3,000: with half of them as queries a point of accuracy is about two "
        "standard errors)"))
    parser.add_argument("--skip_curation", action="store_true")
    args = parser.parse_args()
    output = (ROOT / args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    start = time.perf_counter()

    if not args.skip_curation:
        run("1. face-aware curation of real faces (LFW subset, photos)",
            [python, "examples/curate.py", "--output", str(output / "curated_lfw")])
    print("\n=== 2. synthetic faces and their face-dominant crops", flush=True)
    make_face_crops(output, args.num_train, args.num_eval)
    # pretrain.py resumes from the checkpoints in its output folder; a run made with other flags is started afresh
    flags_stamp = output / "backbone_flags.json"
    if (output / "backbone").exists() and (not flags_stamp.exists() or json.loads(flags_stamp.read_text()) != PRETRAIN_FLAGS):
        shutil.rmtree(output / "backbone")
    flags_stamp.write_text(json.dumps(PRETRAIN_FLAGS))
    run("3. ProS pre-training (accelerate launch, 1 process)",
        [python, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "examples/pretrain.py",
         "--train_dir", str(output / "faces_train"), "--output_dir", str(output / "backbone"), *PRETRAIN_FLAGS,
         # the teacher's k-NN every 8 epochs, on step 4's split: backbone/training_curves.png shows it learn
         "--knn_dataset", str(output / "faces_eval"), "--knn_eval_steps", "248", "--knn_seed", "1"])
    run("4. k-NN: pre-trained teacher against random initialisation",
        [python, "examples/knn_eval.py", "--model", str(output / "backbone"), "--dataset", str(output / "faces_eval"),
         "--compare_random_init", "--seed", "1", "--test_fraction", "0.5", "--output_json", str(output / "knn.json")])
    run("5. what the teacher's CLS encodes: one factor of a face changed at a time, against random initialisation",
        [python, "examples/factor_sensitivity.py", "--model", str(output / "backbone"), "--compare_random_init",
         "--output_json", str(output / "factor_sensitivity.json")])
    print("\n=== 6. the exported backbone through the Auto classes", flush=True)
    photo_features(output / "backbone")
    run("7. fine-tuning on 5% of the labels: expression, attributes, landmarks; pre-trained against random init",
        [python, "examples/finetune.py", "--task", "all", "--model", str(output / "backbone"),
         "--dataset", str(output / "faces_train"), "--test_dataset", str(output / "faces_eval"),
         "--few_shot", "0.05", "--seeds", "0", "--compare_random_init", "--output_dir", str(output / "finetune"),
         "--disable_tqdm", "True"])

    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Outputs in {output}:")
    for name in sorted(os.listdir(output)):
        print(f"  {name}")
    knn = json.loads((output / "knn.json").read_text())
    print(json.dumps(knn, indent=2)[:2000])
    summary = output / "finetune" / "summary.txt"
    if summary.exists():
        print(summary.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
