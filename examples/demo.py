"""`make demo`: ProS pre-training on a CPU, judged against random initialisation and full supervision, in minutes.

1. face-aware curation of real faces (scikit-image's LFW subset and photos) with examples/curate.py;
2. the embedded benchmark: face-dominant synthetic faces with expression, attribute, landmark and identity labels
   (`pros_hf.representation.benchmark_faces`; the test faces are other people);
3. pre-training of a micro ProS ViT on the training faces, without their labels, with
   `accelerate launch examples/pretrain.py`;
4. the representation protocols (examples/evaluate_representation.py): linear probe and weighted k-NN of the
   exported teacher against the labels alone, the same ViT at random initialisation (3 seeds) and the supervised
   ceiling (the same ViT trained with every label), summarised as the share of the random-to-ceiling gap closed per
   task; then transfer to real faces (face against non-face, landmarks on annotated photographs);
5. features of a real photo through AutoModel / AutoImageProcessor.

Everything lands in --output (default outputs/demo): representation.json and gap_closed.png at its top, with the
ceiling cached beside them for reruns. Each step is one of the examples, run as a user would run it.
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
IMAGE_SIZE = 48
# The pre-training recipe of the demo: a 0.2M-parameter ViT on 48-px faces for a CPU, trained on photometric views.
# - no geometric augmentation but the flip: both global views are the whole face (scale 1, square), no local crops.
#   With DINO's crops (0.4-1 global, 0.05-0.4 local) the few pixels an expression moves were learnt away with the
#   crops' own geometric noise, and no local crops make a step cheap enough for a CPU;
# - DINO's photometric augmentations (colour jitter, blur, solarize) with grayscale on every view: identity in these
#   faces is mostly colour, and colourless views leave shape (expression, pose, face) to tell images apart;
# - Sinkhorn targets: with centering the teacher settles on a few prototypes; Sinkhorn keeps most of the 64 in use;
# - teacher momentum 0.99 instead of 0.996: an EMA horizon of ~100 steps suits a short run;
# - 10 epochs (630 steps): what fits the demo's 10 minutes beside the supervised ceiling it is compared with;
# - 64 prototypes suit a few thousand images; gradient clipping at 3.0 shrank every step 5-20x here, so it is off.
PRETRAIN_FLAGS = (
    f"--preset micro --num_train_epochs 10 --per_device_train_batch_size 64 --global_crop_size {IMAGE_SIZE} "
    "--num_local_crops 0 --num_prototypes 64 --target_mode sinkhorn --teacher_momentum 0.99 --learning_rate 5e-4 "
    "--max_grad_norm 0 --teacher_temperature 0.04 --logging_steps 50 --save_strategy epoch --save_total_limit 1 "
    "--report_to none --seed 0"
).split() + [
    "--augmentation_overrides",
    '{"global_crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "grayscale_p": 1.0}',
]


def run(step: str, command: list[str]) -> None:
    print(f"\n=== {step}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"--- {step}: {time.perf_counter() - start:.0f} s", flush=True)


def make_benchmark_faces(output: Path, num_train: int) -> None:
    """The benchmark's training faces as a saved dataset (pretrain.py's --train_dir), reused when made the same way;
    the evaluation renders the same faces (and the test faces) itself."""
    from pros_hf.data import draw_contact_sheet
    from pros_hf.representation import TRAIN_SEED, benchmark_faces_dataset, benchmark_settings

    folder, stamp = output / "faces_train", output / "faces_train.json"
    settings = benchmark_settings(num_train, IMAGE_SIZE, TRAIN_SEED)
    if (folder / "dataset_info.json").exists() and stamp.exists() and json.loads(stamp.read_text()) == settings:
        print(f"{folder}: reused")
        return
    faces = benchmark_faces_dataset(num_train, IMAGE_SIZE, TRAIN_SEED, num_proc=2, show_progress=False)
    if folder.exists():
        shutil.rmtree(folder)
    faces.save_to_disk(str(folder))
    stamp.write_text(json.dumps(settings))
    draw_contact_sheet(faces.select(range(32)), columns=8).save(output / "faces_train_contact_sheet.png")
    print(f"{folder}: {len(faces)} faces of {settings['num_identities']} people")


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
    print(
        f"AutoModel({type(model).__name__}) on skimage.data.astronaut(): pooler_output {tuple(features.shape)} "
        f"in {1000 * (time.perf_counter() - start):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="outputs/demo")
    parser.add_argument(
        "--num_train",
        type=int,
        default=4000,
        help="benchmark faces to pre-train on (400 people); the probes and the ceiling use their labels",
    )
    parser.add_argument("--num_test", type=int, default=1000, help="held-out benchmark faces of 100 other people")
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="seeds of the protocols")
    parser.add_argument("--skip_curation", action="store_true")
    args = parser.parse_args()
    output = (ROOT / args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    start = time.perf_counter()

    if not args.skip_curation:
        run(
            "1. face-aware curation of real faces (LFW subset, photos)",
            [python, "examples/curate.py", "--output", str(output / "curated_lfw")],
        )
    print("\n=== 2. the benchmark faces", flush=True)
    make_benchmark_faces(output, args.num_train)
    # pretrain.py resumes from the checkpoints in its output folder; a run made with other flags or on other faces is
    # started afresh
    flags_stamp = output / "backbone_flags.json"
    made_with = {"flags": PRETRAIN_FLAGS, "faces": json.loads((output / "faces_train.json").read_text())}
    if (output / "backbone").exists() and (
        not flags_stamp.exists() or json.loads(flags_stamp.read_text()) != made_with
    ):
        shutil.rmtree(output / "backbone")
    flags_stamp.write_text(json.dumps(made_with))
    # one process on both cores (accelerate gives a CPU process one thread unless told otherwise)
    launch = "-m accelerate.commands.launch -q --num_processes 1 --num_cpu_threads_per_process 2 --num_machines 1"
    launch += " --mixed_precision no --dynamo_backend no"
    data = ["--train_dir", str(output / "faces_train"), "--output_dir", str(output / "backbone")]
    run(
        "3. ProS pre-training without labels (accelerate launch, 1 process)",
        [python, *launch.split(), "examples/pretrain.py", *data, *PRETRAIN_FLAGS],
    )
    sizes = ["--num_train", str(args.num_train), "--num_test", str(args.num_test), "--seeds", *args.seeds]
    run(
        "4. linear probe and k-NN: floor, random init, pre-trained, supervised ceiling; transfer to real faces",
        [
            python,
            "examples/evaluate_representation.py",
            "--model",
            f"ProS={output / 'backbone'}",
            "--output_dir",
            str(output),
            *sizes,
            "--real_faces",
        ],
    )
    print("\n=== 5. the exported backbone through the Auto classes", flush=True)
    photo_features(output / "backbone")

    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Outputs in {output}:")
    for name in sorted(os.listdir(output)):
        print(f"  {name}")
    from pros_hf.representation import format_gap_table

    report = json.loads((output / "representation.json").read_text())
    print(
        f"\nShare of the random-init -> supervised-ceiling gap closed by pre-training (gap_closed.png):\n\n"
        f"{format_gap_table(report)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
