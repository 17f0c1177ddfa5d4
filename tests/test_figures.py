import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.decomposition import PCA

from modeling import GenreFeatureExtractor
from training import figures


def assert_png(path, min_size=(300, 200)):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    logits = rng.normal(size=(400, 10)) + 2 * np.eye(10)[labels]
    return labels, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_log_transform_figure_uses_the_extractors_rule(raw_rows, tmp_path):
    extractor = GenreFeatureExtractor().fit(raw_rows)
    values = np.array([0.0, 1e-4, 0.5, 5.0])
    name = "instrumentalness"
    expected = np.log(np.clip(values, extractor.clip_low[name], extractor.clip_high[name]) + 1e-6)
    np.testing.assert_allclose(figures.log_transformed(values, extractor, name), expected)
    assert_png(figures.plot_log_transforms(pd.DataFrame(raw_rows), extractor, tmp_path / "log.png"))


def test_pca_title_states_the_explained_variance(scores, tmp_path, monkeypatch):
    labels, probabilities = scores
    features = np.random.default_rng(1).normal(size=(400, 24)) * np.linspace(3, 0.1, 24)
    titles = []
    monkeypatch.setattr(figures.plt.Axes, "set_title", lambda self, text, *a, **k: titles.append(text))
    assert_png(figures.plot_pca(features, labels, tmp_path / "pca.png"))
    ratio = PCA(n_components=2).fit(features).explained_variance_ratio_
    assert f"PC1 {ratio[0]:.1%}" in titles[0] and f"PC2 {ratio[1]:.1%}" in titles[0]


def test_every_run_figure_is_a_png(scores, tmp_path):
    labels, probabilities = scores
    features = np.random.default_rng(2).normal(size=(400, 24))
    assert_png(figures.plot_tsne(features, labels, tmp_path / "tsne.png", seed=0, sample=200))
    history = [{"loss": 2.0 - e / 10, "epoch": e} for e in range(1, 4)]
    history += [{"eval_loss": 2.1 - e / 10, "epoch": e} for e in range(1, 4)] + [{"train_loss": 1.5, "epoch": 3}]
    assert_png(figures.plot_loss_curves(history, tmp_path / "loss.png"))
    assert_png(figures.plot_roc_curves(labels, probabilities, tmp_path / "roc.png"))
    matrix = np.bincount(labels * 10 + probabilities.argmax(1), minlength=100).reshape(10, 10).tolist()
    assert_png(figures.plot_confusion_matrix(matrix, tmp_path / "confusion.png"))
    trials = pd.DataFrame(
        {
            "number": range(5),
            "value": [0.5, 0.55, np.nan, 0.52, 0.58],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "COMPLETE"],
        }
    )
    assert_png(figures.plot_optimization_history(trials, tmp_path / "history.png"))
