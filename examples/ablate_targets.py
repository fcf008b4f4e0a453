"""The loss ablation: ProS's prototype matching against its relatives at equal steps, data, crops and model.

    python examples/ablate_targets.py --output_dir outputs/ablation              # 5 arms x 3 seeds, the demo's recipe
    python examples/ablate_targets.py --arms pros dino --seeds 0 --num_train_epochs 5 --output_dir /tmp/quick

Every arm pre-trains the demo's micro ViT on the demo's benchmark faces with the demo's recipe (examples/demo.py's
PRETRAIN_FLAGS), changing only how the teacher's targets are made:

- pros: one prototype matrix shared by student and teacher (ProS), targets centred as DINO centres them;
- dino: DINO: the teacher keeps an EMA copy of the prototypes, targets centred by a running mean;
- msn: MSN: shared prototypes, sharpened targets (T = 0.25) and mean-entropy maximisation;
- sinkhorn: SwAV / DINOv2: shared prototypes, targets balanced over the batch by Sinkhorn-Knopp;
- ibot: the pros arm plus iBOT's masked patch loss (weight 1, half of the global crops masked).

`--arm NAME="FLAGS"` adds an arm of your own (any pretrain.py flags over the demo's recipe), e.g. a recipe search:
`--arms sinkhorn --arm k1024="--target_mode sinkhorn --num_prototypes 1024"`. `--parallel 2` pre-trains two runs at a
time on one thread each, which on two CPU cores finishes sooner than one run at a time on both.

Then examples/evaluate_representation.py scores every run (linear probe and k-NN against random initialisation and
the supervised ceiling, which are computed once and shared) and this script writes ablation.json: per arm, task and
protocol, the gap closed as mean and spread over the pre-training seeds, and the arm with the most gap closed.
"""

import argparse
import json
import os
import shlex
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


def parse_arm(text: str) -> tuple[str, list[str]]:
    """`NAME=FLAGS` (a shell-quoted flag string) -> (NAME, flags)."""
    name, sep, flags = text.partition("=")
    if not sep or not name.strip() or not flags.strip().startswith("--"):
        raise argparse.ArgumentTypeError(f'--arm takes NAME="--flag value ...", got {text!r}')
    return name.strip(), shlex.split(flags)


def run_all(commands: dict[str, list[str]], parallel: int) -> None:
    """Run the pre-training commands, `parallel` at a time (one thread each when more than one); stop at a failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if parallel > 1 else None
    pending, running = list(commands.items()), {}
    while pending or running:
        while pending and len(running) < parallel:
            name, command = pending.pop(0)
            running[name] = (subprocess.Popen(command, cwd=ROOT, env=env), time.perf_counter())
        time.sleep(1)
        for name, (process, start) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            if process.returncode:
                for other, _ in running.values():
                    other.kill()
                raise SystemExit(f"pre-training {name} failed (exit status {process.returncode})")
            print(f"--- {name}: {time.perf_counter() - start:.0f} s", flush=True)


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
    parser.add_argument("--arms", nargs="*", default=None, choices=list(ARMS), help="built-in arms (default: all)")
    parser.add_argument(
        "--arm",
        action="append",
        type=parse_arm,
        default=[],
        metavar='NAME="FLAGS"',
        help="an arm of your own: pretrain.py flags over the demo's recipe (repeatable)",
    )
    parser.add_argument("--parallel", type=int, default=1, help="pre-training runs at a time (one thread each)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="pre-training seeds per arm")
    parser.add_argument("--num_train", type=int, default=4000)
    parser.add_argument("--num_test", type=int, default=1000)
    parser.add_argument("--num_train_epochs", type=int, help="override the demo's epochs (equal for every arm)")
    parser.add_argument("--ceiling_epochs", type=int, default=30)
    args = parser.parse_args()
    arms = {name: ARMS[name] for name in (args.arms if args.arms is not None else [] if args.arm else ARMS)}
    for name, flags in args.arm:
        if name in arms:
            parser.error(f"arm {name!r} is given twice")
        arms[name] = flags
    if not arms:
        parser.error("no arm to run: name built-in arms with --arms or add one with --arm")
    if args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")
    output = Path(args.output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    make_benchmark_faces(output, args.num_train)
    base = recipe_without(
        PRETRAIN_FLAGS, {"--target_mode", "--seed"} | ({"--num_train_epochs"} if args.num_train_epochs else set())
    )
    if args.num_train_epochs:
        base += ["--num_train_epochs", str(args.num_train_epochs)]
    models, commands = [], {}
    for arm, flags in arms.items():
        for seed in args.seeds:
            name = f"{arm}-{seed}"
            run_dir = output / name
            if not (run_dir / "config.json").exists():
                commands[name] = [
                    sys.executable,
                    "examples/pretrain.py",
                    "--train_dir",
                    str(output / "faces_train"),
                    "--output_dir",
                    str(run_dir),
                    *base,
                    *flags,
                    "--seed",
                    str(seed),
                    "--disable_tqdm",
                    "True",
                ]
            models += ["--model", f"{name}={run_dir}"]
    run_all(commands, args.parallel)
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
    reports = reports.get("models", {f"{next(iter(arms))}-{args.seeds[0]}": reports})
    table = summarise(reports, list(arms), args.seeds)
    from pros_hf.representation import provenance

    result = {
        **provenance("ablation", "examples/ablate_targets.py", sys.argv[1:]),
        "arms": arms,
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
