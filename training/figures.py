"""The run's figures as PNG files: the paper's, and what a reader of the model card expects."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.metrics import auc, roc_curve  # noqa: E402

from modeling import GENRES  # noqa: E402

SKEWED_FEATURES = ("instrumentalness", "liveness", "speechiness")
COLOURS = plt.get_cmap("tab10").colors  # one fixed colour per genre, in GENRES order


def _save(figure: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def log_transformed(values: np.ndarray, extractor, name: str) -> np.ndarray:
    """What the fitted extractor's log step makes of raw values: log(clip(x) + offset)."""
    clipped = np.clip(values, extractor.clip_low[name], extractor.clip_high[name])
    return np.log(clipped + extractor.log_features[name])


def plot_log_transforms(frame: pd.DataFrame, extractor, path: Path) -> Path:
    figure, axes = plt.subplots(2, len(SKEWED_FEATURES), figsize=(12, 6.5))
    for column, name in enumerate(SKEWED_FEATURES):
        raw = frame[name].dropna().to_numpy(dtype=np.float64)
        axes[0, column].hist(raw, bins=60, color="#4C72B0")
        axes[0, column].set_title(f"{name}: raw")
        axes[1, column].hist(log_transformed(raw, extractor, name), bins=60, color="#DD8452")
        offset = extractor.log_features[name]
        axes[1, column].set_title(f"{name}: log(x + {offset:g})")
        for row in (0, 1):
            axes[row, column].set_ylabel("tracks")
    figure.suptitle("Skewed features before and after the log transform (training rows)")
    return _save(figure, path)


def _scatter_by_genre(axis: plt.Axes, points: np.ndarray, labels: np.ndarray) -> None:
    for genre_id, genre in enumerate(GENRES):
        mask = labels == genre_id
        axis.scatter(points[mask, 0], points[mask, 1], s=3, alpha=0.5, color=COLOURS[genre_id], label=genre)
    axis.legend(markerscale=4, fontsize=8, loc="best", ncols=2)


def plot_pca(features: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(features)
    ratio = pca.explained_variance_ratio_
    figure, axis = plt.subplots(figsize=(8, 6.5))
    _scatter_by_genre(axis, points, labels)
    axis.set_xlabel("PC1")
    axis.set_ylabel("PC2")
    axis.set_title(f"PCA of the preprocessed features: PC1 {ratio[0]:.1%}, PC2 {ratio[1]:.1%} of the variance")
    return _save(figure, path)


def plot_tsne(features: np.ndarray, labels: np.ndarray, path: Path, seed: int, sample: int = 3000) -> Path:
    rows = np.random.default_rng(seed).choice(len(features), size=min(sample, len(features)), replace=False)
    points = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(features[rows])
    figure, axis = plt.subplots(figsize=(8, 6.5))
    _scatter_by_genre(axis, points, labels[rows])
    axis.set_title(f"t-SNE of the preprocessed features ({len(rows):,} training rows, seed {seed})")
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def plot_loss_curves(log_history: list[dict], path: Path) -> Path:
    train = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry and "epoch" in entry]
    validation = [(entry["epoch"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for points, label in ((train, "training loss"), (validation, "validation loss")):
        if points:
            epochs, losses = zip(*points)
            axis.plot(epochs, losses, marker="o", label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("class-weighted cross-entropy")
    axis.set_title("Final model: training and validation loss")
    axis.legend()
    return _save(figure, path)


def plot_roc_curves(labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(7, 6.5))
    for genre_id, genre in enumerate(GENRES):
        false_positive, true_positive, _ = roc_curve(labels == genre_id, probabilities[:, genre_id])
        area = auc(false_positive, true_positive)
        axis.plot(false_positive, true_positive, color=COLOURS[genre_id], label=f"{genre} (AUC {area:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("One-vs-rest ROC curves on the test split")
    axis.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def plot_confusion_matrix(matrix: list[list[int]], path: Path) -> Path:
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(8, 7))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            axis.text(
                j,
                i,
                counts[i, j],
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    axis.set_xticks(range(len(GENRES)), GENRES, rotation=45, ha="right")
    axis.set_yticks(range(len(GENRES)), GENRES)
    axis.set_xlabel("predicted genre")
    axis.set_ylabel("true genre")
    axis.set_title("Confusion matrix on the test split (colour: share of the true genre)")
    return _save(figure, path)


def plot_optimization_history(trials: pd.DataFrame, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    complete = trials[trials["state"] == "COMPLETE"].sort_values("number")
    pruned = trials[(trials["state"] == "PRUNED") & trials["value"].notna()]
    axis.scatter(complete["number"], complete["value"], label="completed trial", color="#4C72B0")
    if len(pruned):
        axis.scatter(pruned["number"], pruned["value"], label="pruned trial (last report)", color="#C44E52", marker="x")
    if len(complete):
        axis.step(complete["number"], complete["value"].cummax(), where="post", color="#55A868", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel("objective: best validation accuracy")
    axis.set_title("Optuna optimisation history")
    axis.legend()
    return _save(figure, path)
