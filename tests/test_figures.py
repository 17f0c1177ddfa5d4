"""The run's figures, read from the returned `Figure`: titles, axis labels, legends and the data each series shows."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve

from music_genre.modeling import GenreFeatureExtractor
from music_genre.modeling.configuration_genre_ffn import NUMERIC_FEATURES
from music_genre.training import figures
from music_genre.training.scoring import calibration_metrics, reliability_bins
from tests.conftest import GENRES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def legend_texts(axis) -> list[str]:
    return [text.get_text() for text in axis.get_legend().get_texts()]


def sorted_rows(points: np.ndarray) -> np.ndarray:
    """The rows of a 2-D point array in a fixed order, to compare what was drawn whatever the drawing order."""
    points = np.asarray(points)
    return points[np.lexsort(points.T[::-1])]


def test_a_given_path_gets_the_returned_figure_as_a_readable_png_and_no_path_writes_nothing(tmp_path, scores):
    labels, probabilities = scores
    path = tmp_path / "figures" / "roc.png"
    figure = figures.plot_roc_curves(labels, probabilities, path)
    assert isinstance(figure, Figure)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        # 7 x 6.5 inches at the module's DPI: the saved file is the returned figure.
        assert image.size == (round(7 * figures.DPI), round(6.5 * figures.DPI))
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["roc.png"]  # no temporary file left behind
    unsaved = figures.plot_roc_curves(labels, probabilities)
    assert isinstance(unsaved, Figure) and [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["roc.png"]


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


def test_log_transform_figure_shows_each_features_raw_and_transformed_histogram(skewed_rows):
    offsets = {"instrumentalness": 1e-4, "liveness": 1e-3, "speechiness": 1e-3}
    extractor = GenreFeatureExtractor(log_features=offsets).fit(skewed_rows)
    figure = figures.plot_log_transforms(skewed_rows, extractor)
    axes = figure.axes
    assert len(axes) == 6
    assert [axis.get_title() for axis in axes[:3]] == [f"{name}: raw" for name in figures.SKEWED_FEATURES]
    assert [axis.get_title() for axis in axes[3:]] == [
        "instrumentalness: log(x + 0.0001)",
        "liveness: log(x + 0.001)",
        "speechiness: log(x + 0.001)",
    ]
    assert [axis.get_xlabel() for axis in axes[:3]] == list(figures.SKEWED_FEATURES)
    assert axes[3].get_xlabel() == "log(instrumentalness + 0.0001)"
    assert all(axis.get_yscale() == "log" and axis.get_ylabel() == "tracks (log scale)" for axis in axes)
    assert f"({len(skewed_rows):,} training rows)" in figure.get_suptitle()
    for column, name in enumerate(figures.SKEWED_FEATURES):
        raw = skewed_rows[name].dropna().to_numpy(dtype=np.float64)  # the missing value is not drawn as a bar
        transformed = np.log(np.clip(raw, extractor.clip_low[name], extractor.clip_high[name]) + offsets[name])
        for axis, values in ((axes[column], raw), (axes[3 + column], transformed)):
            expected, _ = np.histogram(values, bins=60)
            assert [patch.get_height() for patch in axis.patches] == expected.tolist()


def test_log_transform_figure_says_when_the_encoding_is_quantile_normal(skewed_rows):
    extractor = GenreFeatureExtractor(numeric_encoding="quantile-normal", n_quantiles=8).fit(skewed_rows)
    figure = figures.plot_log_transforms(skewed_rows, extractor)
    assert "quantile-normal encoding, not the paper's log transform" in figure.get_suptitle()
    assert figure.axes[3].get_title() == "instrumentalness: quantile-normal"
    assert figure.axes[3].get_xlabel() == "quantile-normal of instrumentalness"


def test_pca_figure_plots_the_first_two_components_and_states_their_variance(scores):
    labels, _ = scores
    features = np.random.default_rng(1).normal(size=(400, 24)) * np.linspace(3, 0.1, 24)
    axis = figures.plot_pca(features, labels, genres=GENRES).axes[0]
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(features)
    ratio = pca.explained_variance_ratio_
    title = axis.get_title()
    assert f"PC1 {100 * ratio[0]:.1f}%" in title and f"PC2 {100 * ratio[1]:.1f}%" in title
    assert axis.get_xlabel() == f"PC1 ({ratio[0]:.1%} of the variance)"
    assert axis.get_ylabel() == f"PC2 ({ratio[1]:.1%} of the variance)"
    (collection,) = axis.collections
    np.testing.assert_allclose(sorted_rows(collection.get_offsets()), sorted_rows(points))
    assert legend_texts(axis) == list(GENRES) and axis.get_legend().get_title().get_text() == "genre"


def test_genres_keep_their_colour_across_figures(scores):
    labels, probabilities = scores
    features = np.random.default_rng(2).normal(size=(400, 24))
    pca = figures.plot_pca(features, labels, genres=GENRES).axes[0]
    roc = figures.plot_roc_curves(labels, probabilities, genres=GENRES).axes[0]
    swatch_colours = [tuple(handle.get_color()) for handle in pca.get_legend().legend_handles]
    line_colours = [tuple(line.get_color()) for line in roc.get_lines()[: len(GENRES)]]
    assert swatch_colours == line_colours == [tuple(c) for c in figures.COLOURS]


def test_each_point_takes_its_genres_colour_in_a_mixed_drawing_order(scores):
    labels, _ = scores
    _, axis = figures.new_figure(figsize=(4, 4))
    # The y coordinate of each point is its genre id, so the plotted points say which colour each should have.
    figures._scatter_by_genre(axis, np.column_stack([np.arange(len(labels)), labels]), labels)
    (collection,) = axis.collections
    drawn_genres = collection.get_offsets()[:, 1].astype(int)
    np.testing.assert_allclose(collection.get_facecolors()[:, :3], np.asarray(figures.COLOURS)[drawn_genres])
    assert sorted(drawn_genres) == sorted(labels)
    # Not drawn genre by genre: the last genre drawn would hide the others where they overlap.
    assert (np.diff(drawn_genres) < 0).sum() > len(GENRES)


def test_tsne_figure_maps_the_seeded_sample(scores):
    labels, _ = scores
    features = np.random.default_rng(2).normal(size=(400, 24))
    axis = figures.plot_tsne(features, labels, seed=0, sample=150, genres=GENRES).axes[0]
    assert axis.get_title() == "t-SNE of the preprocessed features (150 sampled training rows, seed 0)"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("t-SNE 1 (axes have no units)", "t-SNE 2")
    assert list(axis.get_xticks()) == [] and list(axis.get_yticks()) == []
    (collection,) = axis.collections
    sampled = labels[np.random.default_rng(0).choice(400, size=150, replace=False)]
    colours = [to_rgba(colour) for colour in np.asarray(figures.COLOURS)[sampled]]
    # 150 points, one per sampled row, each in its row's genre colour (compared as multisets).
    assert len(collection.get_offsets()) == 150
    assert sorted(map(tuple, collection.get_facecolors()[:, :3])) == sorted(c[:3] for c in colours)
    assert legend_texts(axis) == list(GENRES)


def test_loss_curves_read_training_and_evaluation_logs():
    history = [{"loss": loss, "grad_norm": 1.0, "epoch": float(e)} for e, loss in enumerate((1.9, 1.8, 1.7), 1)]
    history += [
        {"eval_loss": loss, "eval_accuracy": 0.5, "epoch": float(e)} for e, loss in enumerate((2.0, 1.9, 1.7), 1)
    ]
    history += [{"train_loss": 1.5, "train_runtime": 3.0, "epoch": 3.0}, {"loss": 9.0}]
    train, validation = figures.loss_points(history)
    assert train == [(1.0, 1.9), (2.0, 1.8), (3.0, 1.7)]
    assert validation == [(1.0, 2.0), (2.0, 1.9), (3.0, 1.7)]
    axis = figures.plot_loss_curves(history).axes[0]
    training_line, validation_line, best = axis.get_lines()
    assert list(training_line.get_xdata()) == [1.0, 2.0, 3.0] and list(training_line.get_ydata()) == [1.9, 1.8, 1.7]
    assert list(validation_line.get_xdata()) == [1.0, 2.0, 3.0] and list(validation_line.get_ydata()) == [2.0, 1.9, 1.7]
    assert list(best.get_xdata()) == [3.0, 3.0]  # a vertical line at the epoch of the lowest validation loss
    assert legend_texts(axis) == ["training loss", "validation loss", "lowest validation loss (epoch 3)"]
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("epoch", "class-weighted cross-entropy")
    assert axis.get_title() == "Final model: training and validation loss per epoch"


def test_loss_curves_of_a_history_without_losses_say_so():
    axis = figures.plot_loss_curves([{"train_runtime": 3.0}]).axes[0]
    assert len(axis.get_lines()) == 0 and axis.get_legend() is None
    assert [text.get_text() for text in axis.texts] == ["no loss was logged"]


def test_roc_figure_draws_each_genres_curve_with_its_auc(scores):
    labels, probabilities = scores
    axis = figures.plot_roc_curves(labels, probabilities, genres=GENRES).axes[0]
    lines = axis.get_lines()
    assert len(lines) == len(GENRES) + 1
    legend = legend_texts(axis)
    for genre_id, genre in enumerate(GENRES):
        false_positive, true_positive, _ = roc_curve(labels == genre_id, probabilities[:, genre_id])
        np.testing.assert_array_equal(lines[genre_id].get_xdata(), false_positive)
        np.testing.assert_array_equal(lines[genre_id].get_ydata(), true_positive)
        area = roc_auc_score(labels == genre_id, probabilities[:, genre_id])
        assert legend[genre_id] == f"{genre} (AUC {area:.3f})"
    assert list(lines[-1].get_xdata()) == [0, 1] == list(lines[-1].get_ydata())
    assert legend[-1] == "chance (AUC 0.500)"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("false positive rate", "true positive rate")
    assert axis.get_title() == "One-vs-rest ROC curves per genre (400 test rows)"


def test_roc_figure_leaves_out_a_genre_with_no_positive_row(scores):
    labels, probabilities = scores
    labels = np.where(labels == 3, 4, labels)
    axis = figures.plot_roc_curves(labels, probabilities, genres=GENRES).axes[0]
    assert [text.split(" (AUC")[0] for text in legend_texts(axis)] == [*GENRES[:3], *GENRES[4:], "chance"]


def test_confusion_matrix_shows_counts_and_colours_shares_of_the_true_genre(scores):
    labels, probabilities = scores
    matrix = np.bincount(labels * 10 + probabilities.argmax(1), minlength=100).reshape(10, 10)
    figure = figures.plot_confusion_matrix(matrix.tolist(), genres=GENRES)
    axis, colorbar = figure.axes
    assert [text.get_text() for text in axis.texts] == [str(count) for row in matrix for count in row]
    np.testing.assert_allclose(axis.images[0].get_array(), matrix / matrix.sum(axis=1, keepdims=True))
    assert axis.images[0].get_clim() == (0, 1)
    assert [tick.get_text() for tick in axis.get_yticklabels()] == list(GENRES)
    assert [tick.get_text() for tick in axis.get_xticklabels()] == list(GENRES)
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("predicted genre", "true genre")
    assert axis.get_title() == "Confusion matrix (400 test rows; numbers are counts)"
    assert colorbar.get_ylabel() == "share of the true genre's rows"


def test_optimization_history_marks_pruned_trials():
    trials = pd.DataFrame(
        {
            "number": range(6),
            "value": [0.5, 0.55, np.nan, 0.52, 0.58, np.nan],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "COMPLETE", "FAIL"],
        }
    )
    axis = figures.plot_optimization_history(trials).axes[0]
    completed, pruned = (collection.get_offsets() for collection in axis.collections)
    np.testing.assert_allclose(completed, [[0, 0.5], [1, 0.55], [4, 0.58]])
    np.testing.assert_allclose(pruned, [[3, 0.52]])  # trial 2 has no value to plot
    best = axis.get_lines()[0]
    assert list(best.get_ydata()) == [0.5, 0.55, 0.58, 0.58] and list(best.get_xdata()) == [0, 1, 4, 5]
    assert legend_texts(axis) == ["completed trial", "best so far", "pruned trial (last report)"]
    assert axis.get_title() == "Optuna search: 3 completed, 2 pruned; 1 failed or unfinished not shown"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("trial number", "objective: best validation accuracy")


def test_optimization_history_ticks_are_whole_trial_numbers():
    trials = pd.DataFrame({"number": range(3), "value": [0.5, 0.52, 0.51], "state": ["COMPLETE"] * 3})
    figure = figures.plot_optimization_history(trials)
    figure.canvas.draw()
    labels = [tick.get_text().replace("\N{MINUS SIGN}", "-") for tick in figure.axes[0].get_xticklabels()]
    assert labels and all(label.lstrip("-").isdigit() for label in labels), labels


def test_optimization_history_of_a_csv_round_trip_with_no_completed_trial():
    trials = pd.DataFrame({"number": [0, 1], "value": [np.nan, np.nan], "state": ["TrialState.PRUNED", "RUNNING"]})
    axis = figures.plot_optimization_history(trials).axes[0]
    assert len(axis.collections) == 0 and axis.get_legend() is None
    assert [text.get_text() for text in axis.texts] == ["no completed trial"]
    assert axis.get_title() == "Optuna search: 0 completed, 1 pruned; 1 failed or unfinished not shown"


def test_reliability_diagram_plots_each_bins_accuracy_against_its_confidence_and_its_rows(scores):
    labels, after = scores
    before = np.exp(2 * np.log(after))
    before /= before.sum(axis=1, keepdims=True)  # sharper, as an uncalibrated network's probabilities are
    figure = figures.plot_reliability_diagram(labels, before, after, temperature=2.0)
    axis, counts_axis = figure.axes
    perfect, *curves = axis.get_lines()
    assert list(perfect.get_xdata()) == [0, 1] == list(perfect.get_ydata())
    bars = counts_axis.patches
    assert len(bars) == 2 * 15
    for curve, probabilities, heights in zip(curves, (before, after), (bars[:15], bars[15:]), strict=True):
        bins = reliability_bins(labels, probabilities)
        filled = bins["counts"] > 0
        np.testing.assert_allclose(curve.get_xdata(), bins["confidence"][filled])
        np.testing.assert_allclose(curve.get_ydata(), bins["accuracy"][filled])
        assert [bar.get_height() for bar in heights] == bins["counts"].tolist()
    ece_before, ece_after = (calibration_metrics(labels, p)["ece"] for p in (before, after))
    assert legend_texts(axis) == [
        "perfect calibration",
        f"before temperature (ECE {ece_before:.4f})",
        f"T = 2.000 (ECE {ece_after:.4f})",
    ]
    assert axis.get_title() == "Reliability diagram (400 test rows, 15 equal-width bins)"
    assert (counts_axis.get_xlabel(), counts_axis.get_ylabel()) == ("top-label confidence", "rows")


def test_permutation_importance_ranks_the_features_largest_drop_on_top():
    importances = {"tempo": {"mean": 0.02, "std": 0.01}, "popularity": {"mean": 0.2, "std": 0.03}}
    importances["key"] = {"mean": -0.01, "std": 0.005}
    axis = figures.plot_permutation_importance(importances).axes[0]
    # barh draws from the bottom up: the largest drop is the last bar, at the top.
    assert [tick.get_text() for tick in axis.get_yticklabels()] == ["key", "tempo", "popularity"]
    assert [bar.get_width() for bar in axis.patches] == [-0.01, 0.02, 0.2]
    assert axis.get_xlabel() == "drop in test accuracy when the feature is shuffled"
    (error_bars,) = [container for container in axis.containers if isinstance(container, ErrorbarContainer)]
    (errors,) = error_bars.lines[2]
    np.testing.assert_allclose([np.ptp(segment[:, 0]) / 2 for segment in errors.get_segments()], [0.005, 0.01, 0.03])


def test_figures_of_real_rows(real_data):
    rows = real_data.frame.sample(n=2000, random_state=0)
    extractor = GenreFeatureExtractor().fit(rows)
    log_figure = figures.plot_log_transforms(rows, extractor)
    for axis, name in zip(log_figure.axes[:3], figures.SKEWED_FEATURES, strict=True):
        assert sum(patch.get_height() for patch in axis.patches) == rows[name].notna().sum()
    labels = real_data.labels[rows.index.to_numpy()]
    pca = figures.plot_pca(extractor(rows)["input_features"], labels).axes[0]
    assert len(pca.collections[0].get_offsets()) == 2000


def test_a_hundred_genres_get_readable_figures(tmp_path):
    """A table of 120 genres (the Hub's Spotify Tracks table has 114): the matrix is clustered and unnumbered beside
    the largest confusions, the ROC figure keeps the best and worst genres, scatter plots name genres in place."""
    rng = np.random.default_rng(0)
    genres = [f"género {i}" for i in range(120)]
    labels = np.repeat(np.arange(120), 5)
    # Genre 2k is read as 2k + 1 a fifth of the time: those pairs are the largest confusions.
    predicted = np.where((labels % 2 == 0) & (np.arange(len(labels)) % 5 == 0), labels + 1, labels)
    matrix = np.zeros((120, 120), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    figure = figures.plot_confusion_matrix(matrix.tolist(), tmp_path / "confusion.png", genres)
    matrix_axis, bars = figure.axes[0], figure.axes[1]
    assert len(matrix_axis.texts) == 0  # 14,400 numbers would be unreadable
    order = figures.confusion_order(matrix / matrix.sum(axis=1, keepdims=True))
    assert sorted(order) == list(range(120))
    positions = {genre_id: place for place, genre_id in enumerate(order)}
    assert all(abs(positions[g] - positions[g + 1]) == 1 for g in range(0, 120, 2))  # confused pairs sit together
    bar_labels = [tick.get_text() for tick in bars.get_yticklabels()]
    assert len(bar_labels) == figures.TOP_CONFUSIONS and all(" -> " in text for text in bar_labels)
    assert bar_labels[-1].startswith("género ") and "(1)" in bar_labels[-1]
    assert (tmp_path / "confusion.png").read_bytes()[:8] == PNG_SIGNATURE

    probabilities = rng.dirichlet(np.ones(120), size=len(labels))
    probabilities[np.arange(len(labels)), labels] += (labels >= 60) * 0.5  # the later genres are the easy ones
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    roc = figures.plot_roc_curves(labels, probabilities, genres=genres).axes[0]
    legend = [text.split(" (AUC")[0] for text in legend_texts(roc)]
    assert len(legend) == 2 * figures.ROC_EXTREMES + 1 and legend[-1] == "chance"
    assert set(legend[: figures.ROC_EXTREMES]) <= set(genres[60:]) and "120 genres" in roc.get_title()
    assert set(legend[figures.ROC_EXTREMES : -1]) <= set(genres[:60])

    pca = figures.plot_pca(rng.normal(size=(len(labels), 6)), labels, genres=genres).axes[0]
    assert pca.get_legend() is None and {text.get_text() for text in pca.texts} == set(genres)
