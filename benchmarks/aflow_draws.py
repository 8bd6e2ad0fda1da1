"""How much the AFLOW models' draw moves the target score, and what members of several draws buy.

Usage::

    python benchmarks/aflow_draws.py [--dataset togo15] [--aflow-seeds 42 43 44] [--no-train]
                                     [--aflow-set KEY=VALUE ...] [--target-set KEY=VALUE ...]
                                     [--rotate] [--recipes ...]

Every study in ``benchmarks/studies.py`` fine-tunes from one set of 3 AFLOW models, trained once
in the first session (the reproduce table's). This script trains the AFLOW stage again from
nothing with seeds 42, 43 and 44 (its own stage cache; seed 42 retrained is a new draw too:
float summation order differs between code versions and thread counts), then on each set

* ``two-stage`` (the paper's recipe, one target seed) and
* ``two-stage-hybrid-3seeds`` (target seeds 42, 43, 44 per split),

and scores, per split over the validation splits:

* single hybrid seeds, and 3 seeds of one draw (the ``3seeds`` recipe), per draw;
* 3 members from 3 different draws, each with its own target seed: what the
  ``two-stage-hybrid-3chains`` recipe (``reseed="all"``) trains, averaged over every choice
  of 3 draws and seed assignment.

The first-session draw (``benchmarks/out/reproduce``) is included when it exists. Writes
``benchmarks/aflow_draws.md`` and ``benchmarks/out/aflow_draws.json``; runs go to
``benchmarks/out/aflow_draws/`` (resumable).

``--aflow-set keep=last average_last=10`` changes the AFLOW stage's settings (any
:class:`~matgl_ltc.train.recipes.Stage` field) for every draw: a variant of the AFLOW stage,
measured over draws, in its own folder (``benchmarks/out/aflow_draws/<settings>/``) and its own
section of the table. Only ``two-stage-hybrid-3seeds`` is trained for a variant.
``--target-set l2_sp=0.01`` does the same for the target stage; such a variant also runs on the
first session's AFLOW models (they are not retrained). A variant's section ends with its paired
difference to the default on the same draw (AFLOW seed) and splits.

``--rotate`` also trains ``two-stage-hybrid-3seeds`` with ``rotate=True`` on every draw found
(member i of split k fine-tuned from the draw's AFLOW model k + i; member 0 copied from the
draw's ``3seeds`` run): members from 3 AFLOW models at the cost of one draw.
``--recipes two-stage-hybrid-3rotated`` trains that recipe itself on each draw instead (scored in
its own row, with no ``3seeds`` run needed: how MIX was measured on AFLOW draws 43 and 44).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from members import split_scores, split_tables, subset_scores

from matgl_ltc.train.recipes import Stage, resolve_recipe
from matgl_ltc.train.runner import RecipeRunner

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "aflow_draws"
FIRST_SESSION = HERE / "out" / "reproduce"
MEMBER_FOLDERS = ("target", "target_member1", "target_member2")
KEYS = ("best_epoch/mape", "unbiased/mape", "unbiased/log10_mae")
ROTATED = "3 AFLOW models of this draw, one seed each (rotate)"
ROTATED_RUN = "two-stage-hybrid-3rotated, trained as a recipe"
TARGET_PREFIX = "target."


def parse_settings(pairs: list[str], stage: str = "aflow") -> dict[str, Any]:
    """``KEY=VALUE`` pairs as Stage settings, values read as JSON where they parse (``10``, ``true``).

    Target-stage settings are keyed ``target.KEY``, so one flat dict names a variant of both stages.
    """
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in {f.name for f in fields(Stage)}:
            raise SystemExit(f"--{stage}-set {pair!r}: expected KEY=VALUE with KEY a Stage setting")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return {f"{TARGET_PREFIX}{k}": v for k, v in settings.items()} if stage == "target" else settings


def stage_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The AFLOW stage's and the target stage's overrides of one variant."""
    aflow = {k: v for k, v in settings.items() if not k.startswith(TARGET_PREFIX)}
    target = {k.removeprefix(TARGET_PREFIX): v for k, v in settings.items() if k.startswith(TARGET_PREFIX)}
    return aflow, target


def variant_root(settings: dict[str, Any]) -> Path:
    return OUT / ",".join(f"{k}={v}" for k, v in settings.items()) if settings else OUT


def with_aflow_seed(name: str, seed: int, settings: dict[str, Any] | None = None):
    recipe = resolve_recipe(name)
    aflow, target = stage_settings(settings or {})
    stages = (
        replace(recipe.stages[0], seed=seed, **aflow),
        *recipe.stages[1:-1],
        replace(recipe.stages[-1], **target),
    )
    return replace(recipe, name=f"{name} (AFLOW seed {seed})", stages=stages)


def first_session_draw(settings: dict[str, Any]) -> bool:
    """The first session's AFLOW models serve a variant that leaves the AFLOW stage as it is."""
    return not stage_settings(settings)[0] and (FIRST_SESSION / "stages").is_dir()


def run_dir(name: str, draw: str, dataset: str, settings: dict[str, Any]) -> Path:
    """A recipe's run on one draw (``first`` or an AFLOW seed) for a variant (``{}``: the default)."""
    if draw == "first" and not settings:
        return FIRST_SESSION / name / dataset
    return (
        variant_root(settings) / f"{name}-{'first-session' if draw == 'first' else f'aflow{draw}'}" / dataset
    )


def train_draws(
    dataset: str,
    seeds: list[int],
    settings: dict[str, Any],
    names: list[str] | None = None,
    first_session: bool = True,
) -> None:
    runner = RecipeRunner(OUT / "stages", progress=False)
    if not names:
        names = ["two-stage-hybrid-3seeds"] if settings else ["two-stage-hybrid-3seeds", "two-stage"]
    if first_session and settings and first_session_draw(settings):  # a target-stage variant
        for name in names:
            recipe = with_aflow_seed(name, 42, settings)
            RecipeRunner(FIRST_SESSION / "stages", progress=False).run(
                recipe, dataset, run_dir(name, "first", dataset, settings)
            )
    for seed in seeds:
        for name in names:
            recipe = with_aflow_seed(name, seed, settings)
            runner.run(recipe, dataset, run_dir(name, str(seed), dataset, settings))


def rotated_run(draw: str, dataset: str, settings: dict[str, Any]) -> Path:
    slug = "first-session" if draw.startswith("first") else f"aflow{draw.split()[-1]}"
    return variant_root(settings) / f"two-stage-hybrid-3seeds-rotated-{slug}" / dataset


def draw_key(draw: str) -> str:
    """``first`` or the AFLOW seed, from a draw's label."""
    return "first" if draw.startswith("first") else draw.split()[-1]


def train_rotated(
    dataset: str, seeds: list[int], settings: dict[str, Any], first_session: bool = True
) -> None:
    """``two-stage-hybrid-3seeds`` with ``rotate``: member i of split k from AFLOW model k + i.

    Member 0 continues from the same AFLOW model with the same seed as the draw's ``3seeds``
    run, so it is copied from there instead of trained again (same AFLOW model, seed and settings).
    """
    for draw, run in draws_of(dataset, seeds, settings).items():
        key = draw_key(draw)
        first = key == "first"
        if first and not first_session:
            continue
        seed = 42 if first else int(key)
        recipe = replace(with_aflow_seed("two-stage-hybrid-3seeds", seed, settings), rotate=True)
        out = rotated_run(draw, dataset, settings)
        for split in sorted(run.glob("split_*")):
            if not (out / split.name / "target").exists():
                shutil.copytree(split / "target", out / split.name / "target")
        cache = FIRST_SESSION / "stages" if first else OUT / "stages"
        RecipeRunner(cache, progress=False).run(recipe, dataset, out)


def draws_of(dataset: str, seeds: list[int], settings: dict[str, Any]) -> dict[str, Path]:
    found = {}
    first = run_dir("two-stage-hybrid-3seeds", "first", dataset, settings)
    if (not settings or first_session_draw(settings)) and (first / "summary.json").exists():
        found["first session (seed 42)"] = first
    for seed in seeds:
        run = run_dir("two-stage-hybrid-3seeds", str(seed), dataset, settings)
        if (run / "summary.json").exists():
            found[f"seed {seed}"] = run
    return found


def run_scores(run: Path) -> dict[str, np.ndarray]:
    """Per-split scores of a 3-member run (3seeds or rotated), combined with the min-MAPE estimate."""
    return split_scores([split_tables(run, f) for f in MEMBER_FOLDERS], (0, 1, 2), "min_mape")


def mean_and_error(values: list[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "standard_error": float(values.std(ddof=1) / np.sqrt(len(values)))}


def split_means(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """One subset's split-mean scores, shaped as a ``mean_scores`` row."""
    return {k: float(scores[k].mean()) for k in KEYS} | {"n": 1}


def mean_scores(tables: list, combos: list[tuple[int, ...]], estimate: str) -> dict[str, float]:
    scores = [subset_scores(tables, c, estimate) for c in combos]
    return {k: float(np.mean([s[k] for s in scores])) for k in KEYS} | {"n": len(scores)}


def seeds_on_disk(dataset: str, seeds: list[int], settings: dict[str, Any]) -> list[int]:
    """``seeds`` and every AFLOW seed a run of this variant already exists for, so a run on one
    new draw rewrites the table with every draw, not just its own."""
    found = set(seeds)
    for run in variant_root(settings).glob(f"two-stage-hybrid-3*-aflow*/{dataset}/summary.json"):
        found.add(int(run.parent.parent.name.rpartition("-aflow")[2]))
    return sorted(found)


def analyse(dataset: str, seeds: list[int], settings: dict[str, Any]) -> dict:
    seeds = seeds_on_disk(dataset, seeds, settings)
    draws = draws_of(dataset, seeds, settings)
    names = list(draws)
    tables, where = [], []  # one entry per (draw, target seed member)
    for name in names:
        for member, folder in enumerate(MEMBER_FOLDERS):
            tables.append(split_tables(draws[name], folder))
            where.append((name, member))

    def index(name: str, member: int) -> int:
        return where.index((name, member))

    rows, differences = {}, {}  # differences: rotate − 3seeds per split, on the same draw
    for name in names:
        members = [index(name, m) for m in range(3)]
        same = split_scores(tables, tuple(members), "min_mape")
        row = {"single seeds": mean_scores(tables, [(i,) for i in members], "geometric")}
        row["3 seeds of this draw (3seeds)"] = split_means(same)
        two_stage = run_dir("two-stage", draw_key(name), dataset, settings)
        if (two_stage / "summary.json").exists():
            s = json.loads((two_stage / "summary.json").read_text())
            row["two-stage (1 seed)"] = {k: s[k.split("/")[0]][k.split("/")[1]]["mean"] for k in KEYS}
        rotated = rotated_run(name, dataset, settings)
        if (rotated / "summary.json").exists():
            rotated_scores = run_scores(rotated)
            row[ROTATED] = split_means(rotated_scores)
            differences[name] = {k: v - same[k] for k, v in rotated_scores.items()}
        rows[name] = row

    def pooled(subset: list[str]) -> dict:
        same = [tuple(index(n, m) for m in range(3)) for n in subset]
        cross = [
            tuple(index(n, m) for n, m in zip(chosen, assignment))
            for chosen in itertools.combinations(subset, 3)
            for assignment in itertools.permutations(range(3))
        ]
        return {
            "draws": subset,
            "single seeds": mean_scores(
                tables, [(index(n, m),) for n in subset for m in range(3)], "geometric"
            ),
            "3 seeds of one draw (3seeds)": mean_scores(tables, same, "min_mape"),
            "3 draws, one seed each (3chains)": mean_scores(tables, cross, "min_mape"),
            "3 draws, one seed each, geometric mean": mean_scores(tables, cross, "geometric"),
        } | mean_of_draws(subset, ROTATED)

    def mean_of_draws(subset: list[str], what: str) -> dict:
        found = [rows[n][what] for n in subset if what in rows[n]]
        if len(found) < len(subset):
            return {}
        return {what: {k: float(np.mean([f[k] for f in found])) for k in KEYS} | {"n": len(found)}}

    for seed in seeds:  # the recommended recipe trained as such on a draw (no 3seeds run needed)
        run = run_dir("two-stage-hybrid-3rotated", str(seed), dataset, settings)
        if (run / "summary.json").exists():
            rows.setdefault(f"seed {seed}", {})[ROTATED_RUN] = split_means(run_scores(run))
            draws[f"seed {seed}, two-stage-hybrid-3rotated"] = run
    fresh = [n for n in names if not n.startswith("first")]
    # rotated members on every retrained draw, whether trained beside 3seeds or as the recipe
    rotated_fresh = [
        row.get(ROTATED) or row[ROTATED_RUN]
        for name, row in rows.items()
        if not name.startswith("first") and (ROTATED in row or ROTATED_RUN in row)
    ]
    from_nothing = {k: [r[k] for r in rotated_fresh] for k in KEYS}
    return {
        "dataset": dataset,
        "aflow_settings": settings,
        "runs": {n: str(p.relative_to(HERE.parent)) for n, p in draws.items()},
        "per_draw": rows,
        "rotate_minus_3seeds": paired_stats(differences),
        "variant_minus_default": variant_differences(dataset, names, settings) if settings else {},
        "pooled": {
            label: pooled(subset)
            for label, subset in (("all draws", names), ("retrained draws only", fresh))
            if len(subset) >= 3 and (label == "all draws" or subset != names)
        },
        "rotated_from_nothing": {k: mean_and_error(v) | {"values": v} for k, v in from_nothing.items()}
        if len(rotated_fresh) >= 2
        else {},
    }


def paired_stats(differences: dict[str, dict[str, np.ndarray]]) -> dict:
    """Mean ± standard error of per-split differences pooled over draws, and each draw's mean."""
    paired = {}
    for key in KEYS if differences else ():
        d = np.concatenate([differences[n][key] for n in differences])
        paired[key] = mean_and_error(d) | {
            "improved": int((d < 0).sum()),
            "n": len(d),
            "per_draw": {n: float(differences[n][key].mean()) for n in differences},
        }
    return paired


def variant_differences(dataset: str, draws: list[str], settings: dict[str, Any]) -> dict:
    """A variant against the default recipe on the same draw (AFLOW seed) and splits, for
    ``3seeds`` and for rotated members. With a new AFLOW stage the pairing is by seed only:
    the AFLOW models themselves differ."""

    found: dict[str, dict] = {}
    for draw in draws:
        key = draw_key(draw)
        pairs = {
            "3seeds": (run_dir("two-stage-hybrid-3seeds", key, dataset, settings),
                       run_dir("two-stage-hybrid-3seeds", key, dataset, {})),
            "rotate": (rotated_run(draw, dataset, settings), rotated_run(draw, dataset, {})),
        }  # fmt: skip
        for what, (variant, default) in pairs.items():
            if (variant / "summary.json").exists() and (default / "summary.json").exists():
                v, d = run_scores(variant), run_scores(default)
                found.setdefault(what, {})[draw] = {k: v[k] - d[k] for k in KEYS}
    return {what: paired_stats(differences) for what, differences in found.items()}


def paired_lines(title: str, paired: dict) -> list[str]:
    lines = ["", title, ""]
    for key, d in paired.items():
        per_draw = ", ".join(f"{v:+.3f}" for v in d["per_draw"].values())
        lines.append(
            f"- {key}: {d['mean']:+.3f} ± {d['standard_error']:.3f} ({d['improved']}/{d['n']}; {per_draw})"
        )
    return lines


def cells(scores: dict) -> str:
    return " | ".join(f"{scores[k]:.3f}" for k in KEYS)


def markdown(record: dict) -> str:
    lines = [
        "# The AFLOW draw: the same recipe fine-tuned from AFLOW models trained again",
        "",
        "`python benchmarks/aflow_draws.py`. Cells: mean over the 9 validation splits (and over the "
        "seeds or member choices a row pools). Columns: MAPE on the best epoch (paper protocol), "
        "MAPE and log10-MAE on the final epoch (unbiased).",
    ]
    for dataset, entry in record.items():
        lines += [
            "",
            f"## {dataset}",
            "",
            "| AFLOW models | what | n | MAPE best epoch | MAPE unbiased | log10-MAE unbiased |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for draw, row in entry["per_draw"].items():
            for what, scores in row.items():
                lines.append(f"| {draw} | {what} | {scores.get('n', 1)} | {cells(scores)} |")
        for label, pool in entry["pooled"].items():
            for what, scores in pool.items():
                if what != "draws":
                    lines.append(f"| pooled: {label} | {what} | {scores['n']} | {cells(scores)} |")
        if entry.get("rotated_from_nothing"):
            found = entry["rotated_from_nothing"]
            lines += [
                "",
                f"Rotated members (`two-stage-hybrid-3rotated`) from nothing, over the {len(found[KEYS[0]]['values'])} "
                "retrained draws that have them (mean ± standard error; each draw's value):",
                "",
            ]
            for key, d in found.items():
                values = ", ".join(f"{v:.3f}" for v in d["values"])
                lines.append(f"- {key}: {d['mean']:.3f} ± {d['standard_error']:.3f} ({values})")
        if entry.get("rotate_minus_3seeds"):
            lines += paired_lines(
                "rotate − 3seeds on the same draw, paired per split (mean ± standard error over draws × "
                "splits; splits improved; per draw):",
                entry["rotate_minus_3seeds"],
            )
        for what, paired in entry.get("variant_minus_default", {}).items():
            lines += paired_lines(
                f"this variant − the default, {what}, on the same draw (AFLOW seed) and splits:", paired
            )
        lines += ["", "Runs: " + ", ".join(f"{k}: `{v}`" for k, v in entry["runs"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="togo15")
    parser.add_argument("--aflow-seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--no-train", action="store_true", help="only score the runs already there")
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=None,
        help="recipes to train on each draw (default: two-stage-hybrid-3seeds and two-stage; "
        "two-stage-hybrid-3rotated runs are scored when found)",
    )
    parser.add_argument(
        "--aflow-set", nargs="+", default=[], metavar="KEY=VALUE", help="AFLOW stage settings of a variant"
    )
    parser.add_argument(
        "--target-set", nargs="+", default=[], metavar="KEY=VALUE", help="target stage settings of a variant"
    )
    parser.add_argument(
        "--first-session",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train on the first session's AFLOW models too, where a variant or --rotate can (default: yes)",
    )
    parser.add_argument(
        "--rotate", action="store_true", help="also train 3seeds with rotate=True on every draw found"
    )
    args = parser.parse_args()
    settings = parse_settings(args.aflow_set) | parse_settings(args.target_set, "target")
    if not args.no_train:
        train_draws(args.dataset, args.aflow_seeds, settings, args.recipes, args.first_session)
    if args.rotate:
        train_rotated(args.dataset, args.aflow_seeds, settings, args.first_session)
    record_path = HERE / "out" / "aflow_draws.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    parts = [f"AFLOW stage {', '.join(args.aflow_set)}"] * bool(args.aflow_set)
    parts += [f"target stage {', '.join(args.target_set)}"] * bool(args.target_set)
    key = ", ".join([args.dataset, *parts])
    record[key] = analyse(args.dataset, args.aflow_seeds, settings)
    record_path.write_text(json.dumps(record, indent=1))
    (HERE / "aflow_draws.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
