"""Render docs/results/NAME.json into the docs pages, between `<!-- table: NAME -->` and `<!-- /table -->`.

    python docs/make_tables.py            # rewrite every table from its JSON
    python docs/make_tables.py --check    # exit 1 naming each stale table, marker without JSON, JSON without marker

Each JSON is what a command wrote (a benchmark's `--output_json`, knn_eval.py's or factor_sensitivity.py's
`--output_json`, finetune.py's results.json files) with four fields beside the figures: "kind" (which render function
below draws it), "command" (the exact command that produced it), "machine" and "date". The block prints the command
and the machine above the table, so every figure in the docs says how to measure it again. `"transcribed": true`
marks figures copied from an earlier report instead of written by the command: the block says so until a rerun
replaces the file. A new kind of result is one function registered in RENDERERS.

Standard library only, so that any python3 runs it (no .venv needed).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BLOCK = re.compile(r"<!-- table: (?P<name>[A-Za-z0-9_.-]+) -->\n(?P<body>.*?)<!-- /table -->", re.S)
OPENING = re.compile(r"<!-- table: (?P<name>[A-Za-z0-9_.-]+) -->")
DASH = "–"  # a figure the run did not record (in a transcribed file: one the earlier report did not give)

RENDERERS = {}


def renders(kind: str):
    """Register the function that turns a result of this kind into Markdown lines."""

    def register(function):
        RENDERERS[kind] = function
        return function

    return register


# ---------------------------------------------------------------------------------------------------------------
# formatting


def number(value, digits: int = 2, percent: bool = False) -> str:
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    return f"{100 * value:,.{digits}f}%" if percent else f"{value:,.{digits}f}"


def rate(value) -> str:
    """Images per second: two decimals below 10 (a CPU's 1.85), one above (a GPU's 524.0)."""
    return number(value, 2 if value is not None and value < 10 else 1)


def times(value) -> str:
    """A speed-up: `4.04x`, or `100x` where the decimals would mean nothing."""
    return DASH if value is None else f"{number(value, 2 if value < 10 else 0)}x"


def pair(a: str, b: str) -> str:
    return DASH if a == b == DASH else f"{a} / {b}"


def paired_ratios(paired: dict | None, slower_key: str, who: str) -> str:
    """`median 1.12 (1.11-1.14), ProS slower in 0 of 7` from a benchmark's paired_ratios."""
    if not paired:
        return DASH
    low, high = paired.get("min"), paired.get("max")
    spread = f"{number(low)}-{number(high)}" if low is not None and high is not None else None
    text = f"median {number(paired['median'])}" if paired.get("median") is not None else ""
    if spread:
        text = f"{text} ({spread})" if text else spread
    if paired.get(slower_key) is not None:
        count = f" of {paired['count']}" if paired.get("count") is not None else ""
        text += f"; {who} slower in {paired[slower_key]}{count}"
    return text or DASH


def mean_std(mean, std, digits: int) -> str:
    if mean is None:
        return DASH
    return number(mean, digits) + ("" if std is None else f" ± {number(std, digits)}")


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return [line(headers), line(["---"] * len(headers)), *(line(row) for row in rows)]


def crops(settings: dict) -> str:
    return (
        f"{settings['num_global']}x{settings['global_size']} + {settings['num_local']}x{settings['local_size']} "
        f"crops, K = {settings['num_prototypes']:,}"
    )


# ---------------------------------------------------------------------------------------------------------------
# one function per kind of result


@renders("backbone")
def render_backbone(result: dict) -> list[str]:
    """benchmarks/bench_backbone.py: ProSModel against transformers' ViTModel, per mode and precision."""
    s = result["settings"]
    modes = {"inference": "inference", "train": "forward+backward"}
    precisions = {"fp32": "fp32", "bf16": "bf16 autocast"}
    rows = []
    for key, speed in result["speed"].items():
        mode, precision = key.split("/")
        memory = result["memory"].get(key, {})
        rows.append(
            [
                f"{modes[mode]} {precisions[precision]}",
                number(speed["vit"], 1),
                number(speed["pros"], 1),
                number(speed["ratio"]),
                pair(number(memory.get("vit"), 1), number(memory.get("pros"), 1)),
                number(memory.get("ratio")),
            ]
        )
    return [
        f"{s['preset']} at {s['image_size']} px, batch {s['batch_size']}, {s['device']}, median of {s['repeats']} "
        "alternating repeats.",
        "",
        *table(
            [
                "mode",
                "ViTModel img/s",
                "ProSModel img/s",
                "ratio",
                "peak step memory ViTModel / ProSModel (MiB)",
                "memory ratio",
            ],
            rows,
        ),
    ]


@renders("pretrain_step")
def render_pretrain_step(result: dict) -> list[str]:
    """benchmarks/bench_pretrain_step.py: the ProS step against the DINO-style reference, per precision."""
    s = result["settings"]
    compiled = "" if s.get("compile", "none") == "none" else f", compiled: {s['compile']} ({s['compile_scope']})"
    rows = []
    for precision, p in result["precisions"].items():
        speed, flops = p["images_per_second"], p.get("gflop_per_step") or {}
        use, memory = p.get("matmul_utilisation") or {}, p.get("peak_memory_mib") or {}
        rows.append(
            [
                {"fp32": "fp32", "bf16": "bf16 autocast"}[precision],
                rate(speed.get("reference")),
                rate(speed.get("pros")),
                number(p["ratio"]),
                paired_ratios(p.get("paired_ratios"), "pros_slower", "ProS"),
                pair(number(flops.get("reference"), 0), number(flops.get("pros"), 0)),
                pair(number(use.get("reference"), 1, percent=True), number(use.get("pros"), 1, percent=True))
                + (f" of {number(p['matmul_tflops'], 0)} TFLOP/s" if p.get("matmul_tflops") is not None else ""),
                pair(number(memory.get("reference"), 0), number(memory.get("pros"), 0)),
                number(p.get("memory_ratio")),
            ]
        )
    lines = [
        f"{s['preset']}, batch {s['batch_size']}, {crops(s)}, {s['device']}{compiled}; reference optimizer: "
        f"{result['reference_optimizer']}; median of {s['repeats']} alternating repeats.",
        "",
        *table(
            [
                "precision",
                "reference img/s",
                "ProS img/s",
                "ratio",
                "paired ratios",
                "GFLOP/step reference / ProS",
                "matmul rate used reference / ProS",
                "peak step memory reference / ProS (MiB)",
                "memory ratio",
            ],
            rows,
        ),
    ]
    if result.get("augmentation_images_per_second") is not None:
        multicrop = rate(result["augmentation_images_per_second"])
        lines += ["", f"On-device multi-crop of the same views: {multicrop} img/s."]
    return lines


@renders("stochastic_depth")
def render_stochastic_depth(result: dict) -> list[str]:
    """benchmarks/bench_stochastic_depth.py: skipping the dropped samples against DINO's 0/1 mask."""
    s = result["settings"]
    rows = [
        [
            number(row["drop_path_rate"], 1),
            {"fp32": "fp32", "bf16": "bf16 autocast"}[row["precision"]],
            rate(row["images_per_second"]["mask"]),
            rate(row["images_per_second"]["skip"]),
            number(row["ratio"]),
            paired_ratios(row.get("paired_ratios"), "skip_slower", "skipping"),
        ]
        for row in result["rows"]
    ]
    return [
        f"The ProS step, {s['preset']}, batch {s['batch_size']}, {crops(s)}, {s['device']}, median of "
        f"{s['repeats']} alternating repeats after {s['warmup']} warm-up step(s) of each.",
        "",
        *table(
            [
                "drop_path_rate (linear over depth)",
                "precision",
                "DINO's mask img/s",
                "skipping img/s",
                "ratio",
                "paired ratios",
            ],
            rows,
        ),
    ]


@renders("augmentation")
def render_augmentation(result: dict) -> list[str]:
    """benchmarks/bench_augmentation.py: the multi-crop pipelines side by side."""
    s = result["settings"]
    names = {
        "MultiCropAugmentation bilinear": "`MultiCropAugmentation`, bilinear (default)",
        "MultiCropAugmentation bicubic": "`MultiCropAugmentation`, bicubic (DINO's resize)",
        "PIL per image": "per-image PIL pipeline, DINO's views (one core)",
        "kornia AugmentationSequential": "kornia `AugmentationSequential`",
    }
    rows = [
        [
            names.get(row["method"], row["method"]),
            rate(row["median_images_per_second"]),
            rate(row.get("best_images_per_second")),
            times(row.get("vs_pil_median")),
        ]
        for row in result["rows"]
    ]
    threads = f", {result['torch_threads']} torch threads" if result.get("torch_threads") else ""
    return [
        f"Batch {s['batch_size']} of {s['source_size']}-px sources to {s['global_crops']}x{s['global_size']} + "
        f"{s['local_crops']}x{s['local_size']} views, {s['device']}{threads}, median of {s['repeats']} alternating "
        "repeats.",
        "",
        *table(["pipeline", "images/s (median)", "best", "vs per-image PIL (median)"], rows),
    ]


@renders("synthetic")
def render_synthetic(result: dict) -> list[str]:
    """benchmarks/bench_synthetic.py: render rate of the synthetic faces on one core."""
    s = result["settings"]
    rows = [
        [
            row["case"],
            rate(row.get("best_images_per_second")),
            rate(row.get("median_images_per_second")),
            rate(row.get("images_per_cpu_second")),
        ]
        for row in result["rows"]
    ]
    return [
        f"{s['num']} faces of {s['image_size']} px per run, {s['repeats']} runs, one core.",
        "",
        *table(["path", "best images/s", "median images/s", "images per CPU-second"], rows),
    ]


@renders("knn")
def render_knn(result: dict) -> list[str]:
    """examples/knn_eval.py --output_json: weighted k-NN top-1 of a model, with random initialisation beside it."""
    labels = result["labels"]
    baseline = any("random_init_top1" in entry for entry in labels.values())
    rows = []
    for name, entry in labels.items():
        row = [name, f"{entry['num_classes']:,}", number(entry["majority_chance_top1"], 1), number(entry["top1"], 1)]
        if baseline:
            row.append(mean_std(entry.get("random_init_top1"), entry.get("random_init_top1_std"), 1))
        rows.append(row)
    headers = ["label", "classes", "majority chance (%)", "model top-1 (%)"]
    headers += ["random init top-1 (%, mean ± std)"] if baseline else []
    undecodable = result.get("num_queries_undecodable")
    left_out = f" ({undecodable} undecodable left out)" if undecodable else ""
    return [
        f"k = {result['k']}, T = {result['temperature']}, {result['num_queries']:,} queries{left_out} of "
        f"{result['num_examples']:,} images, model `{result['model']}`.",
        "",
        *table(headers, rows),
    ]


@renders("factor_sensitivity")
def render_factor_sensitivity(result: dict) -> list[str]:
    """examples/factor_sensitivity.py --output_json: how far the CLS moves when one factor of a face changes."""
    factors = result["factors"]
    rows = []
    for name, entry in result["models"].items():
        rows.append([f"`{name}`", *(number(entry["relative"][f], 3) for f in factors)])
        if "random_init_relative" in entry:
            spread = entry.get("random_init_relative_std") or {}
            rows.append(
                [
                    "same architecture, random init (mean ± std)",
                    *(mean_std(entry["random_init_relative"][f], spread.get(f), 3) for f in factors),
                ]
            )
    counts = result["counts"]
    return [
        f"{counts['groups_kept']} complete groups ({counts['groups_dropped']} dropped by the face crop). CLS "
        "cosine distance of a one-factor change over the mean distance between unrelated faces: 0 is invariant, "
        "1 as far as another face.",
        "",
        *table(["model", *factors], rows),
    ]


LOWER_IS_BETTER = {"nme", "failure_rate"}  # finetune.py's metrics where a smaller figure is the better one
DIGITS = {"nme": 4}  # landmark errors differ in the fourth decimal; accuracies, F1, failure rate and AUC in the third


@renders("finetune")
def render_finetune(result: dict) -> list[str]:
    """examples/finetune.py: each task's results.json under "tasks": pre-trained against random init, per seed."""
    rows = []
    first = next(iter(result["tasks"].values()))
    for task, run in result["tasks"].items():
        pretrained, random_init = run["runs"].get("pretrained"), run["runs"].get("random_init")
        for metric in run["metrics"]:
            row = [task, metric]
            digits = DIGITS.get(metric, 3)
            for init in (pretrained, random_init):
                figures = DASH if init is None else mean_std(init["mean"].get(metric), init["std"].get(metric), digits)
                row.append(figures)
            seeds, better = [], DASH
            if pretrained and random_init:
                for seed in map(str, run["seeds"]):
                    a = pretrained.get("per_seed", {}).get(seed, {}).get(metric)
                    b = random_init.get("per_seed", {}).get(seed, {}).get(metric)
                    if a is not None and b is not None:
                        seeds.append(f"{number(a, digits)} / {number(b, digits)}")
                a, b = pretrained["mean"][metric], random_init["mean"][metric]
                better = (
                    "level"
                    if number(a, digits) == number(b, digits)
                    else "yes"
                    if (a < b if metric in LOWER_IS_BETTER else a > b)
                    else "no"
                )
            row += [better, ", ".join(seeds) or DASH, number(run.get("prior", {}).get("mean", {}).get(metric), digits)]
            rows.append(row)
    few = (
        f"{100 * first['few_shot']:g}% of the {first['num_train']:,} training labels"
        if first["few_shot"]
        else f"all {first['num_train']:,} training labels"
    )
    return [
        f"Backbone `{first['model']}`, {few}, {first['num_test']:,} test images, seeds {first['seeds']}, mode "
        f"{first['mode']}. Labels only: the majority class, each attribute's majority value or the mean face "
        "shape of the same labelled examples, without the images.",
        "",
        *table(
            [
                "task",
                "metric",
                "pre-trained (mean ± std)",
                "random init (mean ± std)",
                "pre-training better?",
                "per seed (pre-trained / random init)",
                "labels only",
            ],
            rows,
        ),
    ]


@renders("metrics_table")
def render_metrics_table(result: dict) -> list[str]:
    """Any rows of named metrics: {"columns": [name, ...], "rows": [{name: value}], "digits": 3, "caption": "..."}."""
    digits = result.get("digits", 3)
    rows = [
        [
            number(row.get(column), digits) if not isinstance(row.get(column), str) else row[column]
            for column in result["columns"]
        ]
        for row in result["rows"]
    ]
    caption = [result["caption"], ""] if result.get("caption") else []
    return [*caption, *table(result["columns"], rows)]


def readable_pattern(pattern: str) -> str:
    """A row's expected first line as a reader sees it: the regular expression without anchors and escapes, `...`
    where anything may stand."""
    text = pattern.lstrip("^").replace(".*", "...")
    return re.sub(r"\\(.)", r"\1", text)


def shown_command(row: dict) -> str:
    """The row's command with its placeholders (`{vit}`: a transformers ViT folder, ...) as `<vit>`."""
    if "call" in row:
        arguments = [repr(a) for a in row["args"]] + [f"{k}={v!r}" for k, v in row["kwargs"].items()]
        text = f"{row['call']}({', '.join(arguments)})"
    else:
        launcher = "accelerate launch -q " if row["run"].startswith("accelerate") else "python "
        program = row["entry"] if row["entry"].startswith("python -m") else launcher + row["entry"]
        text = " ".join([program.removeprefix("python python "), *row["argv"]])
    return re.sub(r"\{(\w+)\}", r"<\1>", text).replace("'<", "<").replace(">'", ">")


@renders("bad_input_matrix")
def render_bad_input_matrix(result: dict) -> list[str]:
    """tests/test_bad_input_matrix.py's rows: what each entry point answers to each kind of bad input, and what is
    skipped and counted or resumed instead (with the test that checks it)."""
    rows = []
    for row in result["rows"]:
        answer = f"exit {row['exit']}: " if row.get("exit") is not None else f"raises {row['raises']}: "
        if row.get("skip_as_root"):
            answer += "(not exercised when the tests run as root) "
        rows.append(
            [f"`{row['entry']}`", row["class"], f"`{shown_command(row)}`", answer + readable_pattern(row["message"])]
        )
    counts: dict[str, int] = {}
    for row in result["rows"]:
        counts[row["entry"]] = counts.get(row["entry"], 0) + 1
    per_entry = ", ".join(f"`{entry}` {count}" for entry, count in counts.items())
    lines = [
        f"Refused: {len(result['rows'])} rows ({per_entry}). Each answer is one line on stderr (or one exception "
        "message), with no traceback; `...` stands for the rest of the message. Placeholders: `<vit>`, "
        "`<clip>`, `<dinov2>` are folders saved from tiny transformers models, `<truncated>` a ProS folder whose "
        "model.safetensors is cut short, `<other_size>` one whose config.json states another width, `<dataset>` "
        "a save_to_disk folder, `<bad_images>` a folder of unreadable files, `<out>` a fresh folder.",
        "",
        *table(["entry point", "input", "command", "answer (first line)"], rows),
    ]
    for outcome in ("skipped and counted", "resumed"):
        items = [item for item in result.get("handled", []) if item["outcome"] == outcome]
        if items:
            lines += [
                "",
                f"{outcome.capitalize()}:",
                "",
                *table(
                    ["input", "what happens", "checked by"],
                    [[item["input"], item["answer"], f"`{item['test']}`"] for item in items],
                ),
            ]
    return lines


# ---------------------------------------------------------------------------------------------------------------
# pages


def gap_rows(tasks: dict) -> list[list[str]]:
    rows = []
    for task, protocols in tasks.items():
        for protocol, row in protocols.items():
            direction = "higher" if row["higher_is_better"] else "lower"
            gap = number(row["gap_closed"])
            if row["gap_closed"] is not None and row.get("gap_closed_std") is not None:
                gap += f" ± {number(row['gap_closed_std'])}"
            rows.append(
                [
                    task,
                    protocol.replace("_", " "),
                    f"{row['metric']} ({direction} is better)",
                    number(row["floor"], 3),
                    mean_std(row["random_init"], row["random_init_std"], 3),
                    mean_std(row["pretrained"], row["pretrained_std"], 3),
                    number(row["ceiling"], 3),
                    gap,
                ]
            )
    return rows


GAP_HEADERS = [
    "task",
    "protocol",
    "metric",
    "floor (labels alone)",
    "random init (mean ± std)",
    "pre-trained (mean ± std)",
    "supervised ceiling",
    "gap closed",
]


@renders("representation")
def render_representation(result: dict) -> list[str]:
    """examples/evaluate_representation.py: floor, random init, pre-trained, ceiling and the share of the gap closed."""
    return [
        f"Means over seeds {result['seeds']}; model `{result.get('model', '?')}`; the ceiling trained for "
        f"{result['ceiling_recipe']['epochs']} epochs. Gap closed = (pre-trained - random init) / (ceiling - "
        "random init).",
        "",
        *table(GAP_HEADERS, gap_rows(result["tasks"])),
    ]


@renders("real_faces")
def render_real_faces(result: dict) -> list[str]:
    """examples/evaluate_representation.py --real_faces: transfer to real photographs, against random init."""
    rows = []
    for model, figures in result["models"].items():
        for figure, row in figures.items():
            if "skipped" in row:
                rows.append([model, figure, row["skipped"], DASH, DASH, DASH])
                continue
            count = f", {row['num_images']} photographs" if "num_images" in row else ""
            rows.append(
                [
                    model,
                    figure,
                    f"{row['metric']}{count}",
                    number(row["floor"], 3),
                    mean_std(row["random_init"], row["random_init_std"], 3),
                    mean_std(row["pretrained"], row["pretrained_std"], 3),
                ]
            )
    return table(["model", "figure", "metric", "floor", "random init (mean ± std)", "pre-trained (mean ± std)"], rows)


@renders("ablation")
def render_ablation(result: dict) -> list[str]:
    """examples/ablate_targets.py: gap closed per arm and task (linear probe and k-NN), over pre-training seeds."""
    arms = result["gap_closed"]
    tasks = list(next(iter(arms.values())))
    rows = []
    for arm, per_task in arms.items():
        for protocol in ("linear_probe", "knn"):
            cells = [
                mean_std(per_task[task][protocol]["gap_closed"], per_task[task][protocol]["gap_closed_std"], 2)
                for task in tasks
            ]
            rows.append([arm, protocol.replace("_", " "), *cells])
    best = result["best_linear_probe"]
    flags = [f"- {arm}: `{shlex.join(result['arms'][arm])}`" for arm in arms if arm in result.get("arms", {})]
    return [
        f"Pre-training seeds {result['seeds']}; most gap closed by the linear probe: **{best}**.",
        "",
        *table(["arm", "protocol", *tasks], rows),
        *(["", "Each arm's flags over the recipe:", "", *flags] if flags else []),
    ]


def render_block(name: str, result: dict) -> str:
    """The whole text between the markers: the command, where and when it ran, then the table."""
    kind = result.get("kind")
    if kind not in RENDERERS:
        raise ValueError(f"results/{name}.json: unknown kind {kind!r} (known: {', '.join(sorted(RENDERERS))})")
    for field in ("command", "machine", "date"):
        if not result.get(field):
            raise ValueError(f"results/{name}.json has no {field!r}")
    provenance = f"{result['machine']}; {result['date']}"
    if result.get("transcribed"):
        provenance += "; figures transcribed by hand from the run's printed output, to be replaced by a rerun"
    lines = [f"`{result['command']}`", f"({provenance})", "", *RENDERERS[kind](result)]
    return "\n".join(lines) + "\n"


def load_results(results_dir: Path) -> dict[str, dict]:
    results = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except ValueError as error:
            raise SystemExit(f"{path}: not valid JSON ({error})") from None
    return results


def update_pages(docs_dir: Path, results_dir: Path, check: bool) -> list[str]:
    """Rewrite (or with `check`, only compare) every table; returns one line per problem found."""
    results = load_results(results_dir)
    problems, used = [], set()
    for page in sorted(docs_dir.glob("*.md")):
        text = page.read_text()
        closed = {match.start() for match in BLOCK.finditer(text)}
        for opening in OPENING.finditer(text):
            if opening.start() not in closed:
                problems.append(f"{page.name}: table {opening['name']!r} has no closing <!-- /table -->")

        def replace(match: re.Match) -> str:
            name = match["name"]
            if name in used:
                problems.append(f"{page.name}: table {name!r} appears more than once")
            used.add(name)
            if name not in results:
                problems.append(f"{page.name}: table {name!r} has no results/{name}.json")
                return match.group(0)
            try:
                body = render_block(name, results[name])
            except (KeyError, TypeError, ValueError) as error:
                problems.append(f"{page.name}: table {name!r} cannot be rendered: {error!r}")
                return match.group(0)
            if body != match["body"]:
                problems.append(f"{page.name}: table {name!r} differs from results/{name}.json")
            return f"<!-- table: {name} -->\n{body}<!-- /table -->"

        new_text = BLOCK.sub(replace, text)
        if not check and new_text != text:
            page.write_text(new_text)
    for name in sorted(set(results) - used):
        problems.append(f"results/{name}.json has no <!-- table: {name} --> in any page")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help=(
            "change nothing; exit 1 naming each table that differs from its JSON, each marker without a JSON and each "
            "JSON without a marker"
        ),
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder of the pages (default: this script's)")
    parser.add_argument("--results", type=Path, default=None, help="folder of the JSON files (default: DOCS/results)")
    args = parser.parse_args(argv)
    results_dir = args.results or args.docs / "results"
    problems = update_pages(args.docs, results_dir, check=args.check)
    if not args.check:  # a rewrite fixed every table that differed; what remains needs a marker or a JSON
        problems = [problem for problem in problems if " differs from " not in problem]
    for problem in problems:
        print(f"stale: {problem}")
    if args.check and not problems:
        print(f"every table matches its JSON ({len(load_results(results_dir))} results)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
