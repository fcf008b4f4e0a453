"""The loss ablation: ProS's prototype matching against its relatives at equal steps, data, crops and model.

    python examples/ablate_targets.py --output_dir outputs/ablation              # 5 arms x 3 seeds, the demo's recipe
    python examples/ablate_targets.py --arms pros dino --seeds 0 --num_train_epochs 5 --output_dir /tmp/quick

Every arm pre-trains the demo's micro ViT on the demo's benchmark faces with the demo's recipe (examples/demo.py's
PRETRAIN_FLAGS), changing only how the teacher's targets are made:

- pros: one prototype matrix shared by student and teacher, centred targets (ProSConfig's defaults);
- dino: DINO: the teacher keeps an EMA copy of the prototypes, targets centred by a running mean;
- msn: MSN: shared prototypes, sharpened targets (T = 0.25) and mean-entropy maximisation;
- sinkhorn: SwAV / DINOv2: shared prototypes, targets balanced over the batch by Sinkhorn-Knopp;
- ibot: ProS's defaults plus iBOT's masked patch loss (weight 1, half of the global crops masked).

Then examples/evaluate_representation.py scores every run (linear probe and k-NN against random initialisation and
the supervised ceiling, which are computed once and shared) and this script writes ablation.json: per arm, task and
protocol, the gap closed as mean and spread over the pre-training seeds, and the arm with the most gap closed.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from demo import IMAGE_SIZE, PRETRAIN_FLAGS, make_benchmark_faces

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "pros": ["--target_mode", "center", "--share_prototypes", "True"],
    "dino": ["--target_mode", "center", "--share_prototypes", "False"],
    "msn": ["--target_mode", "sharpen", "--share_prototypes", "True"],
    "sinkhorn": ["--target_mode", "sinkhorn", "--share_prototypes", "True"],
    "ibot": ["--target_mode", "center", "--share_prototypes", "True", "--patch_loss_weight", "1.0"],
}


def recipe_without(flags: list[str], names: set[str]) -> list[str]:
    """`flags` with the named flags (and their values) removed."""
    out, skip = [], False
    for index, flag in enumerate(flags):
        if skip:
            skip = False
            continue
        if flag in names:
            skip = index + 1 < len(flags) and not flags[index + 1].startswith("--")
            continue
        out.append(flag)
    return out


def summarise(reports: dict, arms: list[str], seeds: list[int]) -> dict:
    """Per arm, task and protocol: the gap closed over the pre-training seeds (mean, spread, values)."""
    from pros_hf.representation import mean_and_std

    table = {}
    for arm in arms:
        runs = [reports[f"{arm}-{seed}"] for seed in seeds]
        table[arm] = {}
        for task, protocols in runs[0]["tasks"].items():
            table[arm][task] = {}
            for protocol in protocols:
                values = [run["tasks"][task][protocol]["gap_closed"] for run in runs]
                known = [v for v in values if v is not None]
                mean, std = mean_and_std(known) if known else (None, None)
                table[arm][task][protocol] = {"gap_closed": mean, "gap_closed_std": std, "values": values}
    return table


def best_arm(table: dict, protocol: str = "linear_probe") -> str:
    """The arm with the highest gap closed averaged over the tasks under `protocol`."""

    def score(arm):
        values = [row[protocol]["gap_closed"] for row in table[arm].values() if row[protocol]["gap_closed"] is not None]
        return sum(values) / len(values) if values else float("-inf")

    return max(table, key=score)


def format_table(table: dict) -> str:
    tasks = list(next(iter(table.values())))
    lines = ["| arm | " + " | ".join(f"{task} (probe)" for task in tasks) + " |", "| --- |" + " --- |" * len(tasks)]
    for arm, rows in table.items():
        cells = []
        for task in tasks:
            row = rows[task]["linear_probe"]
            cells.append(
                "n/a" if row["gap_closed"] is None else f"{row['gap_closed']:.2f} ± {row['gap_closed_std']:.2f}"
            )
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="pre-training seeds per arm")
    parser.add_argument("--num_train", type=int, default=4000)
    parser.add_argument("--num_test", type=int, default=1000)
    parser.add_argument("--num_train_epochs", type=int, help="override the demo's epochs (equal for every arm)")
    parser.add_argument("--ceiling_epochs", type=int, default=30)
    args = parser.parse_args()
    output = Path(args.output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    make_benchmark_faces(output, args.num_train)
    base = recipe_without(
        PRETRAIN_FLAGS, {"--target_mode", "--seed"} | ({"--num_train_epochs"} if args.num_train_epochs else set())
    )
    if args.num_train_epochs:
        base += ["--num_train_epochs", str(args.num_train_epochs)]
    models = []
    for arm in args.arms:
        for seed in args.seeds:
            name = f"{arm}-{seed}"
            run_dir = output / name
            if not (run_dir / "config.json").exists():
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "examples/pretrain.py",
                        "--train_dir",
                        str(output / "faces_train"),
                        "--output_dir",
                        str(run_dir),
                        *base,
                        *ARMS[arm],
                        "--seed",
                        str(seed),
                        "--disable_tqdm",
                        "True",
                    ],
                    check=True,
                    cwd=ROOT,
                )
                print(f"--- {name}: {time.perf_counter() - start:.0f} s", flush=True)
            models += ["--model", f"{name}={run_dir}"]
    subprocess.run(
        [
            sys.executable,
            "examples/evaluate_representation.py",
            *models,
            "--output_dir",
            str(output),
            "--num_train",
            str(args.num_train),
            "--num_test",
            str(args.num_test),
            "--seeds",
            "0",
            "1",
            "2",
            "--ceiling_epochs",
            str(args.ceiling_epochs),
        ],
        check=True,
        cwd=ROOT,
    )
    reports = json.loads((output / "representation.json").read_text())
    reports = reports.get("models", {f"{args.arms[0]}-{args.seeds[0]}": reports})
    table = summarise(reports, args.arms, args.seeds)
    from pros_hf.representation import provenance

    result = {
        **provenance("ablation", "examples/ablate_targets.py", sys.argv[1:]),
        "arms": {arm: ARMS[arm] for arm in args.arms},
        "seeds": args.seeds,
        "image_size": IMAGE_SIZE,
        "recipe": base,
        "gap_closed": table,
        "best_linear_probe": best_arm(table),
    }
    (output / "ablation.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nGap closed by the linear probe (mean ± spread over pre-training seeds):\n\n{format_table(table)}\n\n"
        f"Most gap closed: {result['best_linear_probe']}. Wrote {output / 'ablation.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
