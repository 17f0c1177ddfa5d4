"""The run's figures: the paper's, and what a reader of the model card expects.

Every `plot_*` function builds and returns a `matplotlib.figure.Figure` (no pyplot: nothing global to close) and,
given a `path`, also writes it there as a PNG. Genres always take the same colour, `genre_colours(n)[i]` for label
id i (the genre `config.id2label[i]`), so figures can be read side by side. The genres are the run's: up to
`FULL_DETAIL_GENRES` a figure names every genre; with more (a table of 100+ genres), the ROC figure shows the
average and the best and worst genres, the scatter plots name each genre at its centre, and the confusion figure
shows a clustered matrix beside the largest confusions.
"""

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import auc, roc_curve

from music_genre.modeling import GenreFeatureExtractor
from music_genre.modeling.feature_extraction_genre_ffn import _quantile_normal
from music_genre.training.run_folder import write_bytes_atomic
from music_genre.training.scoring import calibration_metrics, reliability_bins

SKEWED_FEATURES = ("instrumentalness", "liveness", "speechiness")
COLOURS = matplotlib.colormaps["tab10"].colors  # the colours of up to 10 genres, by label id
# Up to this many genres a figure names each one (legends, matrix cells); beyond, it summarises.
FULL_DETAIL_GENRES = 20
# ROC curves drawn one per genre up to this many genres; beyond, the best and worst ROC_EXTREMES each.
ROC_CURVES_PER_GENRE = 12
ROC_EXTREMES = 5
# The largest off-diagonal cells listed beside a matrix too large to number.
TOP_CONFUSIONS = 25
RAW_COLOUR, TRANSFORMED_COLOUR = "#4C72B0", "#DD8452"
DPI = 110


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **subplots) -> tuple[Figure, Axes]:
    """A figure drawn by Agg, outside pyplot, and its axes (`Figure.subplots`: one Axes or an array of them)."""
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, **subplots)


def save_png(figure: Figure, path: str | Path) -> Path:
    """Writes `figure` as a PNG at `path`, atomically (a reader never sees half a file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, dpi=DPI, format="png")
    write_bytes_atomic(path, png.getvalue())
    return path


def _finished(figure: Figure, path: str | Path | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        save_png(figure, path)
    return figure


def log_transformed(values: np.ndarray, extractor: GenreFeatureExtractor, name: str) -> np.ndarray:
    """What the fitted extractor's log step makes of raw values: log(clip(x, low, high) + offset)."""
    clipped = np.clip(np.asarray(values, dtype=np.float64), extractor.clip_low[name], extractor.clip_high[name])
    return np.log(clipped + extractor.log_features[name])


def extractor_transformed(values: np.ndarray, extractor: GenreFeatureExtractor, name: str) -> tuple[np.ndarray, str]:
    """The extractor's own transform of one feature before scaling, and a label saying which transform it is."""
    if "log-standard" not in extractor.numeric_views:
        clipped = np.clip(np.asarray(values, dtype=np.float64), extractor.clip_low[name], extractor.clip_high[name])
        return _quantile_normal(clipped, extractor.quantiles[name]), "quantile-normal"
    if name in extractor.log_features:
        return log_transformed(values, extractor, name), f"log(x + {extractor.log_features[name]:g})"
    # A feature left out of log_features is only clipped by the extractor.
    return np.clip(values, extractor.clip_low[name], extractor.clip_high[name]), "clipped, no log"


def plot_log_transforms(
    frame: pd.DataFrame, extractor: GenreFeatureExtractor, path: str | Path | None = None
) -> Figure:
    """Histograms of the skewed features: raw (top row) and after the fitted extractor's transform (bottom row)."""
    figure, axes = new_figure(2, len(SKEWED_FEATURES), figsize=(13, 7))
    for column, name in enumerate(SKEWED_FEATURES):
        raw = frame[name].dropna().to_numpy(dtype=np.float64)  # missing values are imputed later, not transformed
        transformed, rule = extractor_transformed(raw, extractor, name)
        top, bottom = axes[0, column], axes[1, column]
        top.hist(raw, bins=60, color=RAW_COLOUR)
        top.set_title(f"{name}: raw")
        top.set_xlabel(name)
        bottom.hist(transformed, bins=60, color=TRANSFORMED_COLOUR)
        bottom.set_title(f"{name}: {rule}")
        bottom.set_xlabel(f"{rule} of {name}" if rule == "quantile-normal" else rule.replace("x", name, 1))
        for axis in (top, bottom):
            # Log counts: the spike of zeros in instrumentalness would otherwise hide every other bar.
            axis.set_yscale("log")
            axis.set_ylabel("tracks (log scale)")
    title = f"Skewed features before and after the feature extractor's transform ({len(frame):,} training rows)"
    if "log-standard" not in extractor.numeric_views:
        title += "\nthis extractor uses the quantile-normal encoding, not the paper's log transform"
    elif "quantile-normal" in extractor.numeric_views:
        title += "\nthis extractor also gives the network a quantile-normal map of every numeric feature"
    figure.suptitle(title)
    return _finished(figure, path)


def genre_colours(n: int) -> list[tuple[float, ...]]:
    """One colour per genre by label id: tab10 up to 10 genres, tab20 up to 20, evenly spaced hues beyond."""
    if n <= len(COLOURS):
        return list(COLOURS[:n])
    if n <= 20:
        return list(matplotlib.colormaps["tab20"].colors[:n])
    return [tuple(colour) for colour in matplotlib.colormaps["turbo"](np.linspace(0.05, 0.95, n))]


def genre_names(genres: Sequence[str] | None, n: int) -> list[str]:
    """`genres` as a list, or the label ids as text where a caller has no names."""
    names = list(genres) if genres is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} genre names for {n} genres")
    return names


def _scatter_by_genre(axis: Axes, points: np.ndarray, labels: np.ndarray, genres: Sequence[str] | None = None) -> None:
    """One translucent point per row in its genre's colour, drawn in a fixed shuffled order; a genre legend, or with
    more than FULL_DETAIL_GENRES genres each genre's name at the median of its points."""
    labels = np.asarray(labels).astype(np.int64)
    names = genre_names(genres, int(labels.max()) + 1 if genres is None else len(genres))
    colours = np.asarray(genre_colours(len(names)))
    # Shuffled, not genre by genre: otherwise the last genre drawn paints over all the others.
    order = np.random.default_rng(0).permutation(len(labels))
    size = float(np.clip(20_000 / max(len(labels), 1), 3, 12))  # fewer points, larger dots
    axis.scatter(points[order, 0], points[order, 1], s=size, alpha=0.6, c=colours[labels[order]], linewidths=0)
    if len(names) <= FULL_DETAIL_GENRES:
        swatches = [
            Line2D([], [], linestyle="", marker="o", markersize=6, color=colours[genre_id], label=genre)
            for genre_id, genre in enumerate(names)
        ]
        axis.legend(handles=swatches, fontsize=8, loc="best", ncols=2, title="genre")
        return
    for genre_id, genre in enumerate(names):
        mine = points[labels == genre_id]
        if len(mine):
            centre = np.median(mine, axis=0)
            axis.annotate(genre, centre, fontsize=5, ha="center", va="center", alpha=0.85)


def pca_title(ratio: np.ndarray) -> str:
    """The PCA figure's title, stating the share of variance PC1 and PC2 explain."""
    return f"PCA of the preprocessed features: PC1 {ratio[0]:.1%}, PC2 {ratio[1]:.1%} of the variance"


def plot_pca(
    features: np.ndarray, labels: np.ndarray, path: str | Path | None = None, genres: Sequence[str] | None = None
) -> Figure:
    """The first two principal components of the encoded features, one colour per genre."""
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(np.asarray(features, dtype=np.float64))
    ratio = pca.explained_variance_ratio_
    figure, axis = new_figure(figsize=(8, 6.5))
    _scatter_by_genre(axis, points, labels, genres)
    axis.set_xlabel(f"PC1 ({ratio[0]:.1%} of the variance)")
    axis.set_ylabel(f"PC2 ({ratio[1]:.1%} of the variance)")
    axis.set_title(pca_title(ratio))
    return _finished(figure, path)


def plot_tsne(
    features: np.ndarray,
    labels: np.ndarray,
    path: str | Path | None = None,
    *,
    seed: int,
    sample: int = 3000,
    genres: Sequence[str] | None = None,
) -> Figure:
    """A 2-D t-SNE map of a seeded sample of the encoded features, one colour per genre."""
    rows = np.random.default_rng(seed).choice(len(features), size=min(sample, len(features)), replace=False)
    perplexity = min(30.0, (len(rows) - 1) / 3)  # sklearn needs perplexity < n_samples
    # 500 iterations (250 after early exaggeration) give the same map as the default 1000 in half the time.
    embedding = TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=500, random_state=seed, n_jobs=1)
    points = embedding.fit_transform(np.asarray(features, dtype=np.float64)[rows])
    figure, axis = new_figure(figsize=(8, 6.5))
    _scatter_by_genre(axis, points, np.asarray(labels)[rows], genres)
    axis.set_title(f"t-SNE of the preprocessed features ({len(rows):,} sampled training rows, seed {seed})")
    axis.set_xlabel("t-SNE 1 (axes have no units)")
    axis.set_ylabel("t-SNE 2")
    axis.set_xticks([])
    axis.set_yticks([])
    return _finished(figure, path)


def loss_points(log_history: list[dict]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(epoch, loss) of the training logs and of the evaluations in a Trainer's log history."""
    train = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry and "epoch" in entry]
    validation = [
        (entry["epoch"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry and "epoch" in entry
    ]
    return train, validation


def plot_loss_curves(log_history: list[dict], path: str | Path | None = None) -> Figure:
    """Training and validation loss per epoch from `Trainer.state.log_history`."""
    train, validation = loss_points(log_history)
    figure, axis = new_figure(figsize=(7, 4.5))
    for points, label, colour in ((train, "training", RAW_COLOUR), (validation, "validation", TRANSFORMED_COLOUR)):
        if points:
            epochs, losses = zip(*sorted(points))
            axis.plot(epochs, losses, marker="o", markersize=3, color=colour, label=f"{label} loss")
    if validation:
        best_epoch, best_loss = min(validation, key=lambda point: point[1])
        axis.axvline(best_epoch, color="grey", linestyle=":", label=f"lowest validation loss (epoch {best_epoch:g})")
    if train or validation:
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no loss was logged", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("epoch")
    axis.set_ylabel("class-weighted cross-entropy")
    axis.set_title("Final model: training and validation loss per epoch")
    return _finished(figure, path)


def plot_roc_curves(
    labels: np.ndarray, probabilities: np.ndarray, path: str | Path | None = None, genres: Sequence[str] | None = None
) -> Figure:
    """One-vs-rest ROC curve per genre, its AUC in the legend; with more than ROC_CURVES_PER_GENRE genres, the
    ROC_EXTREMES genres of highest and of lowest AUC, and the macro average over all genres in the title."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    names = genre_names(genres, probabilities.shape[1])
    colours = genre_colours(len(names))
    curves = {}
    for genre_id in range(len(names)):
        positives = labels == genre_id
        if positives.all() or not positives.any():
            continue  # a ROC curve needs both classes
        false_positive, true_positive, _ = roc_curve(positives, probabilities[:, genre_id])
        curves[genre_id] = (false_positive, true_positive, auc(false_positive, true_positive))
    shown = sorted(curves)
    title = f"One-vs-rest ROC curves per genre ({len(labels):,} test rows)"
    if len(names) > ROC_CURVES_PER_GENRE:
        ranked = sorted(curves, key=lambda genre_id: -curves[genre_id][2])
        shown = ranked[:ROC_EXTREMES] + [g for g in ranked[-ROC_EXTREMES:] if g not in ranked[:ROC_EXTREMES]]
        macro = np.mean([area for _, _, area in curves.values()]) if curves else float("nan")
        title = (
            f"One-vs-rest ROC: the {ROC_EXTREMES} best and {ROC_EXTREMES} worst of {len(names)} genres\n"
            f"(macro AUC over the {len(curves)} genres in the test rows: {macro:.3f}; {len(labels):,} test rows)"
        )
    figure, axis = new_figure(figsize=(7, 6.5))
    for genre_id in shown:
        false_positive, true_positive, area = curves[genre_id]
        axis.plot(false_positive, true_positive, color=colours[genre_id], label=f"{names[genre_id]} (AUC {area:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="chance (AUC 0.500)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title)
    axis.legend(fontsize=8, loc="lower right")
    return _finished(figure, path)


def plot_confusion_matrix(
    matrix: list[list[int]], path: str | Path | None = None, genres: Sequence[str] | None = None
) -> Figure:
    """Counts per (true, predicted) genre; colour is the share of the true genre's rows. With more than
    FULL_DETAIL_GENRES genres, the matrix is drawn without numbers, its genres ordered so that genres confused with
    each other sit together (average-linkage clustering), beside the TOP_CONFUSIONS largest confusions."""
    counts = np.asarray(matrix, dtype=np.int64)
    names = genre_names(genres, counts.shape[0])
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if len(names) > FULL_DETAIL_GENRES:
        return _finished(_large_confusion_figure(counts, shares, names), path)
    figure, axis = new_figure(figsize=(8.5, 7.5))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if shares[i, j] > 0.5 else "black"  # dark cells need light text
            axis.text(j, i, f"{counts[i, j]:d}", ha="center", va="center", fontsize=8, color=colour)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted genre")
    axis.set_ylabel("true genre")
    axis.set_title(f"Confusion matrix ({counts.sum():,} test rows; numbers are counts)")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true genre's rows")
    return _finished(figure, path)


def confusion_order(shares: np.ndarray) -> np.ndarray:
    """Genre ids in an order that puts genres often confused with each other side by side (average linkage on one
    minus the symmetrised share of rows confused)."""
    similarity = (shares + shares.T) / 2
    np.fill_diagonal(similarity, 1.0)
    distance = np.clip(1.0 - similarity, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    return leaves_list(linkage(squareform(distance, checks=False), method="average"))


def top_confusions(
    counts: np.ndarray, names: Sequence[str], n: int = TOP_CONFUSIONS
) -> list[tuple[str, str, float, int]]:
    """The `n` largest off-diagonal cells as (true genre, predicted genre, share of the true genre's rows, count)."""
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    off = np.where(np.eye(len(counts), dtype=bool), -1.0, shares)
    cells = np.argsort(off, axis=None)[::-1][:n]
    rows, columns = np.unravel_index(cells, off.shape)
    return [
        (names[i], names[j], float(shares[i, j]), int(counts[i, j])) for i, j in zip(rows, columns) if counts[i, j] > 0
    ]


def _large_confusion_figure(counts: np.ndarray, shares: np.ndarray, names: list[str]) -> Figure:
    n = len(names)
    figure, (matrix_axis, bar_axis) = new_figure(1, 2, figsize=(18, 9), gridspec_kw={"width_ratios": [1.15, 1]})
    order = confusion_order(shares)
    image = matrix_axis.imshow(shares[np.ix_(order, order)], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = [names[i] for i in order]
    fontsize = float(np.clip(600 / n, 3, 8))
    matrix_axis.set_xticks(range(n), ticks, rotation=90, fontsize=fontsize)
    matrix_axis.set_yticks(range(n), ticks, fontsize=fontsize)
    matrix_axis.set_xlabel("predicted genre")
    matrix_axis.set_ylabel("true genre")
    matrix_axis.set_title(f"{n} genres, clustered so that confused genres sit together")
    figure.colorbar(image, ax=matrix_axis, fraction=0.046, pad=0.04, label="share of the true genre's rows")
    top = top_confusions(counts, names)
    positions = np.arange(len(top))[::-1]
    bar_axis.barh(positions, [share for _, _, share, _ in top], color=RAW_COLOUR)
    bar_axis.set_yticks(positions, [f"{true} -> {predicted} ({count:,})" for true, predicted, _, count in top])
    bar_axis.set_xlabel("share of the true genre's test rows predicted as the other genre")
    bar_axis.set_title(f"The {len(top)} largest confusions (true -> predicted, rows)")
    figure.suptitle(f"Confusion matrix ({counts.sum():,} test rows)")
    return figure


def _state_names(states: pd.Series) -> pd.Series:
    """ "COMPLETE" whether the frame holds names or `TrialState.COMPLETE` objects/strings (a CSV round trip)."""
    return states.astype(str).str.rsplit(".", n=1).str[-1].str.upper()


def plot_optimization_history(trials: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Objective per completed trial, pruned trials at their last reported value, and the best so far."""
    states = _state_names(trials["state"]) if "state" in trials else pd.Series("", index=trials.index)
    values = trials["value"] if "value" in trials else pd.Series(np.nan, index=trials.index)
    complete = trials.assign(value=values)[(states == "COMPLETE") & values.notna()].sort_values("number")
    pruned = trials.assign(value=values)[(states == "PRUNED") & values.notna()]
    figure, axis = new_figure(figsize=(9.5, 4.8))
    if len(complete):
        axis.scatter(complete["number"], complete["value"], color=RAW_COLOUR, label="completed trial", zorder=3)
        best = complete["value"].cummax()
        last_trial = max(int(trials["number"].max()), int(complete["number"].iloc[-1]))
        # The line runs to the last trial so a reader sees the best value stayed put after it was found.
        steps_x = [*complete["number"].tolist(), last_trial]
        steps_y = [*best.tolist(), best.iloc[-1]]
        axis.step(steps_x, steps_y, where="post", color="#55A868", label="best so far")
    if len(pruned):
        axis.scatter(
            pruned["number"], pruned["value"], color="#C44E52", marker="x", label="pruned trial (last report)", zorder=3
        )
    if len(complete) or len(pruned):
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: trials fill the whole plot area
    else:
        axis.text(0.5, 0.5, "no completed trial", ha="center", va="center", transform=axis.transAxes)
    others = int((~states.isin(["COMPLETE", "PRUNED"])).sum())
    suffix = f"; {others} failed or unfinished not shown" if others else ""
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered 0, 1, 2: no "0.5" ticks
    axis.set_xlabel("trial number")
    axis.set_ylabel("objective: best validation accuracy")
    axis.set_title(f"Optuna search: {len(complete)} completed, {int((states == 'PRUNED').sum())} pruned{suffix}")
    return _finished(figure, path)


def plot_reliability_diagram(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray, temperature: float, path: str | Path | None = None
) -> Figure:
    """Accuracy against top-label confidence per bin, before and after the temperature, with the rows per bin."""
    figure, (axis, counts_axis) = new_figure(2, 1, figsize=(7, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect calibration")
    for name, probabilities, colour in (("before", before, RAW_COLOUR), ("after", after, TRANSFORMED_COLOUR)):
        bins = reliability_bins(labels, probabilities)
        filled = bins["counts"] > 0
        ece = calibration_metrics(labels, probabilities)["ece"]
        label = f"{name} temperature (ECE {ece:.4f})" if name == "before" else f"T = {temperature:.3f} (ECE {ece:.4f})"
        axis.plot(bins["confidence"][filled], bins["accuracy"][filled], marker="o", color=colour, label=label)
        centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
        width = np.diff(bins["edges"]) * 0.4
        offset = -width / 2 if name == "before" else width / 2
        counts_axis.bar(centres + offset, bins["counts"], width=width, color=colour)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy in the bin")
    axis.set_title(f"Reliability diagram ({len(labels):,} test rows, {len(bins['counts'])} equal-width bins)")
    axis.legend(loc="upper left")
    counts_axis.set_xlabel("top-label confidence")
    counts_axis.set_ylabel("rows")
    return _finished(figure, path)


def plot_permutation_importance(importances: dict[str, dict[str, float]], path: str | Path | None = None) -> Figure:
    """Test accuracy lost when each raw feature is shuffled (mean and std over repeats), largest on top."""
    ranked = sorted(importances.items(), key=lambda item: item[1]["mean"])
    figure, axis = new_figure(figsize=(7.5, 5.5))
    positions = np.arange(len(ranked))
    axis.barh(
        positions, [v["mean"] for _, v in ranked], xerr=[v["std"] for _, v in ranked], color=RAW_COLOUR, capsize=3
    )
    axis.set_yticks(positions, [name for name, _ in ranked])
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_xlabel("drop in test accuracy when the feature is shuffled")
    axis.set_title("Permutation importance of the 13 raw features (test split)")
    return _finished(figure, path)
