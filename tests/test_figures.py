"""The run's figures: each function writes a readable PNG from synthetic inputs, and the numbers it shows are right."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.decomposition import PCA

from modeling import GENRES, GenreFeatureExtractor
from modeling.configuration_genre_ffn import NUMERIC_FEATURES
from training import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_size=(500, 300)):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert min_size[0] <= width <= 3000 and min_size[1] <= height <= 3000


@pytest.fixture
def captured(monkeypatch):
    """The figures each call saves, kept open so a test can read their titles and artists."""
    saved = []

    def keep(figure, path):
        saved.append(figure)
        figure.tight_layout()
        figure.savefig(path, dpi=figures.DPI)
        return path

    monkeypatch.setattr(figures, "_save", keep)
    yield saved
    for figure in saved:
        figures.plt.close(figure)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    logits = rng.normal(size=(400, 10)) + 2 * np.eye(10)[labels]
    return labels, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.fixture
def skewed_rows(raw_rows):
    """The hand-made rows, with a missing instrumentalness as the cleaned frame holds it (NaN)."""
    frame = pd.DataFrame(raw_rows)
    frame.loc[1, "instrumentalness"] = np.nan
    return frame


def test_log_transform_helper_is_the_extractors_rule(raw_rows):
    offsets = {"instrumentalness": 1e-3, "liveness": 1e-2, "speechiness": 0.5, "duration_ms": 1.0}
    extractor = GenreFeatureExtractor(log_features=offsets).fit(raw_rows)
    values = np.array([0.0, 1e-4, 0.5, 5.0, -1.0])
    for name in figures.SKEWED_FEATURES:
        lo, hi = extractor.clip_low[name], extractor.clip_high[name]
        expected = np.log(np.clip(values, lo, hi) + offsets[name])
        np.testing.assert_allclose(figures.log_transformed(values, extractor, name), expected)
        transformed, rule = figures.extractor_transformed(values, extractor, name)
        np.testing.assert_allclose(transformed, expected)
        assert rule == f"log(x + {offsets[name]:g})"


def test_log_transform_helper_matches_the_extractors_output(raw_rows):
    # The helper must agree with what the extractor really feeds the network (before standardising).
    extractor = GenreFeatureExtractor().fit(raw_rows)
    encoded = extractor(raw_rows)["input_features"]
    frame = pd.DataFrame(raw_rows)
    for name in figures.SKEWED_FEATURES:
        j = NUMERIC_FEATURES.index(name)
        mean, std = extractor.mean[j], extractor.std[j]
        np.testing.assert_allclose(
            figures.log_transformed(frame[name].to_numpy(), extractor, name), encoded[:, j] * std + mean, rtol=1e-5
        )


def test_log_transform_figure_shows_the_offsets(skewed_rows, tmp_path, captured):
    extractor = GenreFeatureExtractor(log_features={"instrumentalness": 1e-4, "liveness": 1e-3, "speechiness": 1e-3})
    extractor.fit(skewed_rows)
    assert_png(figures.plot_log_transforms(skewed_rows, extractor, tmp_path / "log.png"))
    axes = captured[0].axes
    assert len(axes) == 6
    assert [axis.get_title() for axis in axes[3:]] == [
        "instrumentalness: log(x + 0.0001)",
        "liveness: log(x + 0.001)",
        "speechiness: log(x + 0.001)",
    ]
    # The missing value is left out of the histograms, not drawn as a bar.
    heights = sum(patch.get_height() for patch in axes[0].patches)
    assert heights == len(skewed_rows) - 1


def test_log_transform_figure_says_when_the_encoding_is_quantile_normal(skewed_rows, tmp_path, captured):
    extractor = GenreFeatureExtractor(numeric_encoding="quantile-normal", n_quantiles=8).fit(skewed_rows)
    assert_png(figures.plot_log_transforms(skewed_rows, extractor, tmp_path / "log.png"))
    assert "quantile-normal" in captured[0].get_suptitle()
    assert captured[0].axes[3].get_title() == "instrumentalness: quantile-normal"


def test_pca_title_states_the_explained_variance(scores, tmp_path, captured):
    labels, _ = scores
    features = np.random.default_rng(1).normal(size=(400, 24)) * np.linspace(3, 0.1, 24)
    assert_png(figures.plot_pca(features, labels, tmp_path / "pca.png"))
    ratio = PCA(n_components=2).fit(features).explained_variance_ratio_
    title = captured[0].axes[0].get_title()
    assert f"PC1 {100 * ratio[0]:.1f}%" in title and f"PC2 {100 * ratio[1]:.1f}%" in title
    legend = [text.get_text() for text in captured[0].axes[0].get_legend().get_texts()]
    assert legend == list(GENRES)


def test_genres_keep_their_colour_across_figures(scores, tmp_path, captured):
    labels, probabilities = scores
    features = np.random.default_rng(2).normal(size=(400, 24))
    figures.plot_pca(features, labels, tmp_path / "pca.png")
    figures.plot_roc_curves(labels, probabilities, tmp_path / "roc.png")
    swatch_colours = [tuple(handle.get_color()) for handle in captured[0].axes[0].get_legend().legend_handles]
    line_colours = [tuple(line.get_color()) for line in captured[1].axes[0].get_lines()[: len(GENRES)]]
    assert swatch_colours == line_colours == [tuple(c) for c in figures.COLOURS]


def test_each_point_takes_its_genres_colour_in_a_mixed_drawing_order(scores):
    labels, _ = scores
    figure, axis = figures.plt.subplots()
    # The y coordinate of each point is its genre id, so the plotted points say which colour each should have.
    figures._scatter_by_genre(axis, np.column_stack([np.arange(len(labels)), labels]), labels)
    (collection,) = axis.collections
    drawn_genres = collection.get_offsets()[:, 1].astype(int)
    np.testing.assert_allclose(collection.get_facecolors()[:, :3], np.asarray(figures.COLOURS)[drawn_genres])
    assert sorted(drawn_genres) == sorted(labels)
    # Not drawn genre by genre: the last genre drawn would hide the others where they overlap.
    assert (np.diff(drawn_genres) < 0).sum() > len(GENRES)
    figures.plt.close(figure)


def test_tsne_figure(scores, tmp_path):
    labels, _ = scores
    features = np.random.default_rng(2).normal(size=(400, 24))
    assert_png(figures.plot_tsne(features, labels, tmp_path / "tsne.png", seed=0, sample=150))


def test_loss_curves_read_training_and_evaluation_logs(tmp_path, captured):
    history = [{"loss": loss, "grad_norm": 1.0, "epoch": float(e)} for e, loss in enumerate((1.9, 1.8, 1.7), 1)]
    history += [
        {"eval_loss": loss, "eval_accuracy": 0.5, "epoch": float(e)} for e, loss in enumerate((2.0, 1.9, 1.8), 1)
    ]
    history += [{"train_loss": 1.5, "train_runtime": 3.0, "epoch": 3.0}, {"loss": 9.0}]
    train, validation = figures.loss_points(history)
    assert train == [(1.0, 1.9), (2.0, 1.8), (3.0, 1.7)]
    assert validation == [(1.0, 2.0), (2.0, 1.9), (3.0, 1.8)]
    assert_png(figures.plot_loss_curves(history, tmp_path / "loss.png"))
    lines = captured[0].axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines[:2]] == [[1.9, 1.8, 1.7], [2.0, 1.9, 1.8]]
    assert_png(figures.plot_loss_curves([], tmp_path / "empty.png"))


def test_roc_legend_holds_each_genres_auc(scores, tmp_path, captured):
    from sklearn.metrics import roc_auc_score

    labels, probabilities = scores
    assert_png(figures.plot_roc_curves(labels, probabilities, tmp_path / "roc.png"))
    legend = [text.get_text() for text in captured[0].axes[0].get_legend().get_texts()]
    for genre_id, genre in enumerate(GENRES):
        area = roc_auc_score(labels == genre_id, probabilities[:, genre_id])
        assert legend[genre_id] == f"{genre} (AUC {area:.3f})"


def test_confusion_matrix_annotates_counts(scores, tmp_path, captured):
    labels, probabilities = scores
    matrix = np.bincount(labels * 10 + probabilities.argmax(1), minlength=100).reshape(10, 10).tolist()
    assert_png(figures.plot_confusion_matrix(matrix, tmp_path / "confusion.png"))
    axis = captured[0].axes[0]
    assert [text.get_text() for text in axis.texts] == [str(count) for row in matrix for count in row]
    assert [tick.get_text() for tick in axis.get_yticklabels()] == list(GENRES)
    assert [tick.get_text() for tick in axis.get_xticklabels()] == list(GENRES)
    # Colour is the share of the true genre's rows, so every row sums to one.
    np.testing.assert_allclose(axis.images[0].get_array().sum(axis=1), 1.0)


def test_optimization_history_marks_pruned_trials(tmp_path, captured):
    trials = pd.DataFrame(
        {
            "number": range(6),
            "value": [0.5, 0.55, np.nan, 0.52, 0.58, np.nan],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "COMPLETE", "FAIL"],
        }
    )
    assert_png(figures.plot_optimization_history(trials, tmp_path / "history.png"))
    axis = captured[0].axes[0]
    completed, pruned = (collection.get_offsets() for collection in axis.collections)
    np.testing.assert_allclose(completed, [[0, 0.5], [1, 0.55], [4, 0.58]])
    np.testing.assert_allclose(pruned, [[3, 0.52]])  # trial 2 has no value to plot
    best = axis.get_lines()[0]
    assert list(best.get_ydata()) == [0.5, 0.55, 0.58, 0.58] and list(best.get_xdata()) == [0, 1, 4, 5]
    assert "3 completed, 2 pruned; 1 failed" in axis.get_title()


def test_optimization_history_ticks_are_whole_trial_numbers(tmp_path, captured):
    trials = pd.DataFrame({"number": range(3), "value": [0.5, 0.52, 0.51], "state": ["COMPLETE"] * 3})
    figures.plot_optimization_history(trials, tmp_path / "history.png")
    figure = captured[0]
    figure.canvas.draw()
    labels = [tick.get_text().replace("\N{MINUS SIGN}", "-") for tick in figure.axes[0].get_xticklabels()]
    assert labels and all(label.lstrip("-").isdigit() for label in labels), labels


def test_optimization_history_of_a_csv_round_trip_with_no_completed_trial(tmp_path):
    trials = pd.DataFrame({"number": [0, 1], "value": [np.nan, np.nan], "state": ["TrialState.PRUNED", "RUNNING"]})
    assert_png(figures.plot_optimization_history(trials, tmp_path / "history.png"))


def test_figures_of_real_rows(real_data, tmp_path):
    rows = real_data.frame.sample(n=2000, random_state=0)
    extractor = GenreFeatureExtractor().fit(rows)
    assert_png(figures.plot_log_transforms(rows, extractor, tmp_path / "log.png"))
    labels = real_data.labels[rows.index.to_numpy()]
    assert_png(figures.plot_pca(extractor(rows)["input_features"], labels, tmp_path / "pca.png"))
