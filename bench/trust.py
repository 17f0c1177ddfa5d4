"""Trust benchmark of the bundled model (`space/model/`): calibration, conformal coverage and how faithful its
explanations are, on the split its own run recorded (`training_run.json`) of the real CSV.

    python -m bench.trust                   # bench/trust.md: 1,000 test rows explained, every test row calibrated
    python -m bench.trust --rows 200 --output bench/output/trust.md

The bundled folder was saved before calibration existed (temperature 1.0, no conformal scores), so this fits both
on the run's validation split, exactly as `music-genre train` now does before saving, and measures them on its test
split; the folder itself is left unchanged. Faithfulness (issue 16): on each of the first `--rows` test rows,
setting the 3 most-attributed raw features (Integrated Gradients of the predicted genre's probability, against the
training-median reference row) to the reference should lower that probability more than setting 3 random
features does; the target is at least 80 % of rows.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import BENCH, SPACE_MODEL
from music_genre.modeling import (
    FEATURE_NAMES,
    TASK,
    GenreClassificationPipeline,
    GenreFeatureExtractor,
    GenreFFNForSequenceClassification,
)
from music_genre.modeling.modeling_genre_ffn import native_bfloat16
from music_genre.modeling.pipeline_genre_ffn import feature_attributions
from music_genre.training.calibration import calibrate
from music_genre.training.data import load_data, split_indices
from music_genre.training.scoring import calibration_metrics
from music_genre.training.trainer import predict_probabilities
from music_genre.training.trust import trust_report

FAITHFULNESS_TARGET = 0.8
RANDOM_SEEDS = (0, 1, 2, 3, 4)  # draws of the 3 random features: the figure should not hang on one draw


def measure(data_source: str | None, folder: Path, rows: int, figures_dir: Path) -> dict:
    torch.set_num_threads(1)
    model = GenreFFNForSequenceClassification.from_pretrained(folder).eval()
    extractor = GenreFeatureExtractor.from_pretrained(folder)
    run = json.loads((folder / "training_run.json").read_text())
    data = load_data(data_source)
    if data.sha256 != run["data_sha256"]:
        raise SystemExit(f"the CSV's sha256 {data.sha256} is not the bundled run's {run['data_sha256']}")
    splits = split_indices(data, run["seed"], run["split_mode"])
    features = {name: extractor(data.frame.iloc[part])["input_features"] for name, part in splits.items()}
    labels = {name: data.labels[part] for name, part in splits.items()}

    calibrate(model, features["validation"], labels["validation"])
    # What `music-genre train` reports and draws (the reliability diagram, the importance chart) for its model.
    report = trust_report(model, extractor, data.frame.iloc[splits["test"]], labels["test"], figures_dir, seed=0)
    report["permutation_importance"] = report["permutation_importance"]["features"]
    report["ece_if_calibrated"] = ece_if_calibrated(predict_probabilities(model, features["test"]))

    explained = features["test"][:rows]
    start = time.perf_counter()
    report["faithfulness"] = [faithfulness(model, extractor, explained, seed=seed) for seed in RANDOM_SEEDS]
    report["faithfulness_seconds"] = (time.perf_counter() - start) / len(RANDOM_SEEDS)
    classifier = GenreClassificationPipeline(model=model, feature_extractor=extractor, task=TASK)
    song = data.frame.iloc[splits["test"][0]][list(FEATURE_NAMES)].to_dict()
    report["one_song_ms"] = {
        name: _median_ms(lambda keywords=keywords: classifier(song, **keywords))
        for name, keywords in (("top_k=3", {"top_k": 3}), ("coverage=0.9", {"coverage": 0.9}),
                               ("top_k=3, explain=True", {"top_k": 3, "explain": True}))
    }  # fmt: skip
    report["context"] = {
        "rows": {name: len(part) for name, part in splits.items()},
        "compute": "bfloat16 (native)"
        if model.config.inference_dtype == "bfloat16" and native_bfloat16("cpu")
        else "float32",
        "seed": run["seed"],
        "split_mode": run["split_mode"],
        "date": datetime.date.today().isoformat(),
    }
    return report


def faithfulness(
    model: GenreFFNForSequenceClassification,
    extractor: GenreFeatureExtractor,
    features: np.ndarray,
    n_features: int = 3,
    seed: int = 0,
) -> dict:
    """The deletion check on encoded rows: the fraction of rows where referencing the `n_features` most-attributed
    features (largest signed attributions: those pushing the predicted genre up) lowers the predicted genre's
    probability more than referencing `n_features` random ones (one random draw per row), and the mean drops.
    Probabilities are the ones the model serves."""
    features = np.asarray(features, dtype=np.float32)
    rows = np.arange(len(features))
    probabilities = predict_probabilities(model, features)
    predicted = probabilities.argmax(axis=-1)
    attributions = feature_attributions(model, extractor, torch.as_tensor(features), torch.as_tensor(predicted))
    reference = extractor(extractor.reference_row())["input_features"][0]
    names = list(model.config.feature_names)
    column_feature = np.asarray([names.index(name) for name in extractor.column_features])

    def probability_with_reference(chosen: np.ndarray) -> np.ndarray:
        # Each encoded column depends on one raw feature only, so this equals encoding the edited raw row.
        replaced = (column_feature[None, None, :] == chosen[:, :, None]).any(axis=1)
        return predict_probabilities(model, np.where(replaced, reference, features))[rows, predicted]

    most_attributed = np.argsort(-attributions.numpy(), axis=1, kind="stable")[:, :n_features]
    rng = np.random.default_rng(seed)
    random = np.stack([rng.choice(len(names), n_features, replace=False) for _ in rows])
    drop_top = probabilities[rows, predicted] - probability_with_reference(most_attributed)
    drop_random = probabilities[rows, predicted] - probability_with_reference(random)
    return {
        "rows": len(rows),
        "n_features": n_features,
        "fraction_top_beats_random": float((drop_top > drop_random).mean()),
        "mean_drop_top": float(drop_top.mean()),
        "mean_drop_random": float(drop_random.mean()),
    }


def ece_if_calibrated(probabilities: np.ndarray, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """The ECE a perfectly calibrated model with these probabilities would still show on this many rows (genres
    drawn from the probabilities themselves): the sampling floor against which a measured ECE is read."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = probabilities.cumsum(axis=1)
    cumulative[:, -1] = np.inf  # a row's sum can round below a uniform draw
    eces = [
        calibration_metrics((cumulative > rng.random((len(probabilities), 1))).argmax(axis=1), probabilities)["ece"]
        for _ in range(draws)
    ]
    return {"mean": float(np.mean(eces)), "p95": float(np.quantile(eces, 0.95)), "draws": draws}


def _median_ms(call, repeats: int = 30) -> float:
    call()  # warm-up: the first call builds the folded copies
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def markdown(report: dict, command: str) -> str:
    """The report `bench/trust.md` of what `measure` returned (with main's machine load)."""
    context, calibration = report["context"], report["calibration"]
    floor = report["ece_if_calibrated"]
    lines = [
        "# Trust benchmark of the bundled model (`space/model/`)",
        "",
        f"`{command}` on {context['date']}; the run's {context['split_mode']} split (seed "
        f"{context['seed']}): {context['rows']['validation']:,} validation rows calibrate, "
        f"{context['rows']['test']:,} test rows measure; the model computes in {context['compute']}.",
        "",
        "## Calibration (temperature fitted on validation, measured on test)",
        "",
        f"Temperature T = {calibration['temperature']:.4f}.",
        "",
        "| test split | ECE (15 bins) | NLL | Brier | macro AUC |",
        "|---|---|---|---|---|",
    ]
    for stage in ("before", "after"):
        metrics = calibration[stage]
        lines.append(
            f"| {stage} temperature | {metrics['ece']:.4f} | {metrics['nll']:.4f} | {metrics['brier']:.4f} "
            f"| {metrics['roc_auc_macro']:.4f} |"
        )
    lines += [
        "",
        f"A perfectly calibrated model with these probabilities would still show an ECE of {floor['mean']:.4f} on "
        f"{context['rows']['test']:,} rows (mean of {floor['draws']} draws of the genres from its own "
        f"probabilities; 95th percentile {floor['p95']:.4f}): the measured ECE is read against that floor.",
        "",
        "## Conformal genre sets (APS, calibrated on validation, measured on test)",
        "",
        "| level | coverage | mean set size | lowest per-genre coverage |",
        "|---|---|---|---|",
    ]
    for level, metrics in report["conformal"].items():
        genre, lowest = min(metrics["per_genre_coverage"].items(), key=lambda item: item[1])
        lines.append(
            f"| {level} | {metrics['coverage']:.4f} | {metrics['mean_set_size']:.3f} | {lowest:.3f} ({genre}) |"
        )
    runs = report["faithfulness"]
    fractions = [run["fraction_top_beats_random"] for run in runs]
    verdict = "meets" if min(fractions) >= FAITHFULNESS_TARGET else "misses"
    lines += [
        "",
        f"## Faithfulness of the explanations ({runs[0]['rows']:,} test rows)",
        "",
        f"Setting the {runs[0]['n_features']} most-attributed features to the reference row lowers the predicted "
        f"genre's probability more than setting {runs[0]['n_features']} random ones on "
        f"**{np.mean(fractions):.1%}** of rows (mean over {len(runs)} random draws, from {min(fractions):.1%} to "
        f"{max(fractions):.1%}); target at least {FAITHFULNESS_TARGET:.0%}: {verdict} it. Mean probability drop "
        f"{np.mean([run['mean_drop_top'] for run in runs]):.3f} (top 3) against "
        f"{np.mean([run['mean_drop_random'] for run in runs]):.3f} (random 3). Explaining {runs[0]['rows']:,} rows "
        f"(Integrated Gradients, 64 steps, float32) and scoring both edits took "
        f"{report['faithfulness_seconds']:.1f} s.",
        "",
        "One song through the pipeline (median of 30 calls, one thread): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in report["one_song_ms"].items())
        + ".",
        "",
        "## Permutation importance (test accuracy lost when a feature is shuffled, 5 repeats)",
        "",
        "| feature | mean | std |",
        "|---|---|---|",
    ]
    ranked = sorted(report["permutation_importance"].items(), key=lambda item: -item[1]["mean"])
    lines += [f"| {name} | {value['mean']:.4f} | {value['std']:.4f} |" for name, value in ranked]
    load = report["machine_load"]
    lines += [
        "",
        f"Machine load (timings are wall clock): 1-minute load average {load['start']:.2f} at the start, "
        f"{load['end']:.2f} at the end, on {load['cpus']} CPUs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trust", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="the real CSV (default: MUSIC_GENRE_CSV or ../shared/data)")
    parser.add_argument("--model", type=Path, default=SPACE_MODEL, help="a model folder with its training_run.json")
    parser.add_argument("--rows", type=int, default=1000, help="test rows explained for the faithfulness check")
    parser.add_argument("--output", type=Path, default=BENCH / "trust.md")
    parser.add_argument("--figures", type=Path, default=BENCH / "figures", help="where the two PNGs go")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.trust", *(sys.argv[1:] if argv is None else argv)])
    load_before = os.getloadavg()[0]
    report = measure(args.data, args.model, args.rows, args.figures)
    report["machine_load"] = {"start": load_before, "end": os.getloadavg()[0], "cpus": os.cpu_count()}
    text = markdown(report, command)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_text(text)
    partial.replace(args.output)  # atomic: a killed run never leaves half a report


if __name__ == "__main__":
    main()
