"""Calibrated probabilities, conformal genre sets and per-song explanations (issue 16)."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from crepes import ConformalClassifier
from sklearn.metrics import brier_score_loss, log_loss
from transformers import AutoModelForSequenceClassification, pipeline

from bench.quality import peer_trust
from bench.trust import faithfulness
from music_genre.modeling import GenreFeatureExtractor, GenreFFNConfig, save_model_folder
from music_genre.modeling.calibration_genre_ffn import genre_sets, ranked_mass
from music_genre.training.calibration import (
    calibrate,
    calibration_report,
    conformal_config,
    conformity_scores,
    fit_temperature,
    set_coverage,
)
from music_genre.training.scoring import calibration_metrics, softmax, summary_metrics
from tests.conftest import GENRES, REPO, WITHOUT_PROJECT, load_in_clean_process, make_model
from tests.doc_blocks import doc_block

TASK = "music-genre-classification"


def synthetic(n: int, seed: int, sharpness: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Logits of an overconfident model and genres drawn from softer probabilities: exchangeable rows."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.5, size=(n, len(GENRES)))
    truth = softmax(logits * sharpness)
    labels = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_calibration_metrics_match_a_hand_computation_and_scikit_learn():
    probabilities = np.full((4, 10), 0.05)
    probabilities[0, 0] = probabilities[1, 1] = 0.55  # confidence 0.55: bin (8/15, 9/15]
    probabilities[2, 2] = probabilities[3, 3] = 0.55
    labels = np.array([0, 1, 2, 9])  # three right, one wrong
    computed = calibration_metrics(labels, probabilities)
    assert computed["ece"] == pytest.approx(abs(0.75 - 0.55))  # one filled bin: accuracy 0.75, confidence 0.55
    assert computed["nll"] == pytest.approx(-(3 * math.log(0.55) + math.log(0.05)) / 4)
    assert computed["brier"] == pytest.approx((3 * (0.45**2 + 9 * 0.05**2) + (0.55**2 + 0.95**2 + 8 * 0.05**2)) / 4)
    logits, labels = synthetic(500, seed=1)
    probabilities = softmax(logits)
    computed = calibration_metrics(labels, probabilities)
    assert computed["nll"] == pytest.approx(log_loss(labels, probabilities, labels=range(10)), rel=1e-9)
    # scikit-learn's multiclass Brier score is the mean over rows of the squared error summed over classes.
    assert computed["brier"] == pytest.approx(brier_score_loss(labels, probabilities, labels=range(10)), rel=1e-9)


def test_the_fitted_temperature_recovers_the_overconfidence_and_lowers_the_errors():
    logits, labels = synthetic(20_000, seed=2, sharpness=0.6)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(1 / 0.6, rel=0.05)
    before, after = (calibration_metrics(labels, softmax(logits / t)) for t in (1.0, temperature))
    assert after["ece"] < 0.02 < before["ece"]
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]


def test_the_temperature_changes_no_argmax_nor_the_training_loss_but_can_move_one_vs_rest_auc():
    # One genre's probability is not a monotone function of itself across rows under a temperature
    # (p_c = exp(z_c / T) / sum_j exp(z_j / T)), so its one-vs-rest ranking, hence AUC, may move a little.
    model = make_model(num_members=3)
    x, y = torch.randn(300, model.config.input_size), torch.arange(300) % 10
    with torch.no_grad():
        plain = model(input_features=x).logits
        model.config.calibration_temperature = 2.5
        scaled = model(input_features=x).logits
    torch.testing.assert_close(scaled, plain / 2.5)
    assert torch.equal(plain.argmax(-1), scaled.argmax(-1))
    plain_metrics = summary_metrics(y.numpy(), softmax(plain.numpy()))
    scaled_metrics = summary_metrics(y.numpy(), softmax(scaled.numpy()))
    assert plain_metrics.pop("roc_auc_macro") == pytest.approx(scaled_metrics.pop("roc_auc_macro"), abs=0.01)
    assert plain_metrics == scaled_metrics  # every argmax metric exactly
    model.train()
    torch.manual_seed(1)
    loss_scaled = model(input_features=x, labels=y).loss
    model.config.calibration_temperature = 1.0
    torch.manual_seed(1)
    assert model(input_features=x, labels=y).loss == loss_scaled
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        GenreFFNConfig(calibration_temperature=0.0)


def test_conformal_sets_cover_each_level_on_exchangeable_data():
    coverages = {level: [] for level in (0.8, 0.9, 0.95)}
    for seed in range(10):
        logits, labels = synthetic(12_000, seed=10 + seed)
        probabilities = softmax(logits)
        config = GenreFFNConfig(conformal=conformal_config(conformity_scores(probabilities[:2000], labels[:2000])))
        for level, found in coverages.items():
            coverage, size, _ = set_coverage(probabilities[2000:], labels[2000:], config.conformal_threshold(level))
            found.append(coverage)
            assert 1.0 < size < 10.0
    for level, found in coverages.items():
        assert abs(np.mean(found) - level) < 0.01, (level, found)
        assert min(found) > level - 0.03


def test_conformal_sets_agree_with_crepes_on_the_same_scores():
    logits, labels = synthetic(2000 + 3000, seed=3)
    probabilities = softmax(logits)
    stored = conformal_config(conformity_scores(probabilities[:2000], labels[:2000]))
    assert stored["n_calibration"] == 2000 and stored["scores"] == sorted(stored["scores"])
    library = ConformalClassifier().fit(np.asarray(stored["scores"]))
    test = torch.as_tensor(probabilities[2000:])
    order, mass_above = ranked_mass(test)
    every_genre = torch.zeros_like(mass_above).scatter(-1, order, mass_above).numpy()  # score of each genre
    config = GenreFFNConfig(conformal=stored)
    for level in (0.8, 0.9, 0.95):
        expected = library.predict_set(every_genre, confidence=level, smoothing=False).astype(bool)
        _, ids = genre_sets(test, config.conformal_threshold(level))
        ours = np.zeros_like(expected)
        for row, genres in enumerate(ids):
            ours[row, genres] = True
        np.testing.assert_array_equal(ours, expected)


def test_conformal_thresholds_come_from_stored_levels_or_scores_and_refuse_what_they_cannot_give():
    config = GenreFFNConfig(conformal=conformal_config(np.linspace(0.0, 0.99, 100)))
    assert set(config.conformal["thresholds"]) == {"0.8", "0.9", "0.95"}
    # The 91st of the 100 scores 0, 0.01, ..., stored rounded up to the next 1e-6.
    assert config.conformal_threshold(0.9) == pytest.approx(0.9, abs=2e-6)
    assert config.conformal_threshold(0.5) == pytest.approx(0.5, abs=2e-6)  # computed: the 51st
    assert config.conformal_threshold(0.995) == math.inf  # needs a 101st score: every genre
    assert config.conformal_threshold(np.float32(0.9)) == config.conformal_threshold(0.9)  # a numpy number is fine
    for bad in (1.5, 0.0, True, "0.9"):
        with pytest.raises(ValueError, match="coverage must be a number strictly between 0 and 1"):
            config.conformal_threshold(bad)
    with pytest.raises(ValueError, match="no conformal calibration"):
        GenreFFNConfig().conformal_threshold(0.9)
    only_thresholds = GenreFFNConfig(conformal={"thresholds": {"0.9": 0.7}})
    with pytest.raises(ValueError, match="coverage 0.8 is not calibrated for this model; stored levels: 0.9"):
        only_thresholds.conformal_threshold(0.8)


@pytest.fixture
def calibrated(raw_rows):
    """A small ensemble and extractor, calibrated on random encoded rows with random genres."""
    extractor = GenreFeatureExtractor().fit(raw_rows)
    model = make_model(num_members=2, input_size=extractor.encoded_size)
    features = extractor(raw_rows)["input_features"]
    rng = np.random.default_rng(0)
    noisy = np.repeat(features, 40, axis=0) + rng.normal(0, 0.5, size=(40 * len(features), features.shape[1]))
    stored = calibrate(model, noisy.astype(np.float32), rng.integers(0, 10, len(noisy)))
    assert stored["temperature"] == model.config.calibration_temperature != 1.0
    return model, extractor


def test_the_pipeline_returns_coverage_sets_highest_first_as_the_calibration_measured(calibrated, raw_rows):
    model, extractor = calibrated
    classifier = pipeline(model=model, feature_extractor=extractor, task=TASK)
    sets = classifier(raw_rows, coverage=0.9)
    full = classifier(raw_rows, top_k=None)
    threshold = model.config.conformal_threshold(0.9)
    for genres, ranked in zip(sets, full):
        assert [set(g) for g in genres] == [{"label", "score"}] * len(genres)
        assert [g["label"] for g in genres] == [g["label"] for g in ranked[: len(genres)]]  # highest first
        mass_above = np.cumsum([0.0] + [g["score"] for g in ranked])
        assert len(genres) == max(1, int((mass_above[:10] <= threshold + 1e-6).sum()))
    assert len(classifier(raw_rows[0], coverage=0.95)) >= len(classifier(raw_rows[0], coverage=0.8))
    labels = np.arange(len(raw_rows)) % 10
    by_genre = [{g["label"]: g["score"] for g in row} for row in full]
    probabilities = np.asarray([[scores[genre] for genre in GENRES] for scores in by_genre])
    coverage, size, _ = set_coverage(probabilities, labels, threshold)
    assert size == pytest.approx(np.mean([len(genres) for genres in sets]))
    assert coverage == np.mean([GENRES[y] in [g["label"] for g in s] for y, s in zip(labels, sets)])
    # The public method, for a caller holding the probabilities (the Space's table), gives the same sets.
    ids, sizes = classifier.genre_set_members(probabilities, 0.9)
    named = [[GENRES[i] for i in row[:size]] for row, size in zip(ids.tolist(), sizes.tolist())]
    assert named == [[g["label"] for g in s] for s in sets]


def test_the_pipeline_refuses_bad_coverage_and_explain_values(calibrated, raw_rows):
    model, extractor = calibrated
    classifier = pipeline(model=model, feature_extractor=extractor, task=TASK)
    with pytest.raises(ValueError, match="coverage must be a number strictly between 0 and 1, got 1.5"):
        classifier(raw_rows[0], coverage=1.5)
    with pytest.raises(ValueError, match="give top_k or coverage, not both"):
        classifier(raw_rows[0], coverage=0.9, top_k=2)
    with pytest.raises(ValueError, match="explain must be True or False, got 'yes'"):
        classifier(raw_rows[0], explain="yes")
    uncalibrated = pipeline(model=make_model(input_size=extractor.encoded_size), feature_extractor=extractor, task=TASK)
    with pytest.raises(ValueError, match="this model has no conformal calibration"):
        uncalibrated(raw_rows[0], coverage=0.9)


def test_explanations_sum_to_the_score_change_from_the_reference_row(calibrated, raw_rows):
    model, extractor = calibrated
    classifier = pipeline(model=model, feature_extractor=extractor, task=TASK)
    explained = classifier(raw_rows, top_k=3, explain=True)
    reference = {g["label"]: g["score"] for g in classifier(extractor.reference_row(), top_k=None)}
    for genres in explained:
        for genre in genres:
            assert list(genre["attributions"]) == list(model.config.feature_names)
            completeness = sum(genre["attributions"].values())
            assert completeness == pytest.approx(genre["score"] - reference[genre["label"]], abs=2e-3)
    one = classifier(raw_rows[0], coverage=0.9, explain=True)
    assert all(len(genre["attributions"]) == 13 for genre in one)
    # A row equal to the reference has nothing to explain.
    assert all(abs(v) < 1e-6 for v in classifier(extractor.reference_row(), explain=True)[0]["attributions"].values())


def test_explain_without_captum_names_what_to_install(calibrated, raw_rows, monkeypatch):
    model, extractor = calibrated
    classifier = pipeline(model=model, feature_extractor=extractor, task=TASK)
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r"explain=True needs captum .*pip install captum"):
        classifier(raw_rows[0], explain=True)
    assert len(classifier(raw_rows[0], coverage=0.9)) >= 1  # predicting never needs it


# The Hub user's machine: the project unimportable and captum missing.
NO_CAPTUM = (
    WITHOUT_PROJECT
    + r"""
sys.modules["captum"] = None
from transformers import pipeline
classifier = pipeline(model=sys.argv[1], trust_remote_code=True)
rows = json.loads(sys.argv[2])
sets = classifier(rows, coverage=0.9)
try:
    classifier(rows, explain=True)
    message = None
except ImportError as error:
    message = str(error)
print(json.dumps({"sets": sets, "message": message, "temperature": classifier.model.config.calibration_temperature}))
"""
)


def test_the_remote_code_loads_and_serves_sets_without_captum(calibrated, raw_rows, tmp_path):
    model, extractor = calibrated
    save_model_folder(model, extractor, tmp_path)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path).config.conformal == model.config.conformal
    remote = load_in_clean_process(tmp_path, raw_rows, script=NO_CAPTUM)
    local = pipeline(model=model, feature_extractor=extractor, task=TASK)(raw_rows, coverage=0.9)
    assert [[g["label"] for g in row] for row in remote["sets"]] == [[g["label"] for g in row] for row in local]
    assert remote["temperature"] == model.config.calibration_temperature
    assert "pip install captum" in remote["message"]


def test_calibration_report_and_the_peer_metrics_agree_on_one_model(calibrated, raw_rows):
    model, extractor = calibrated
    rng = np.random.default_rng(5)
    features = extractor(raw_rows)["input_features"]
    test = np.repeat(features, 20, axis=0) + rng.normal(0, 0.5, size=(20 * len(features), features.shape[1]))
    labels = rng.integers(0, 10, len(test))
    report = calibration_report(model, test.astype(np.float32), labels)
    assert report["calibration"]["temperature"] == model.config.calibration_temperature
    assert set(report["conformal"]) <= {"0.8", "0.9", "0.95"} and report["conformal"]
    for level_metrics in report["conformal"].values():
        assert set(level_metrics["per_genre_coverage"]) <= set(GENRES) and 1 <= level_metrics["mean_set_size"] <= 10
    # From log-probabilities as a peer gives them: T = 1 fitted on the same rows leaves the metrics unchanged.
    with torch.no_grad():
        log_probabilities = model(input_features=torch.as_tensor(test, dtype=torch.float32)).logits.double().numpy()
    probabilities = np.exp(log_probabilities)
    peer = peer_trust(probabilities, labels, probabilities, labels, GENRES)
    assert peer["calibration"]["before"]["nll"] == pytest.approx(report["calibration"]["after"]["nll"], rel=1e-5)
    assert peer["calibration"]["after"]["nll"] <= peer["calibration"]["before"]["nll"] + 1e-12


def test_attributions_of_the_bundled_model_are_faithful_on_1000_test_rows(real_data):
    folder = REPO / "space" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    extractor = GenreFeatureExtractor.from_pretrained(folder)
    from music_genre.training.data import split_indices

    run = json.loads((folder / "training_run.json").read_text())
    test = split_indices(real_data, run["seed"], run["split_mode"])["test"][:1000]
    measured = faithfulness(model, extractor, extractor(real_data.frame.iloc[test])["input_features"], seed=0)
    assert measured["rows"] == 1000
    assert measured["fraction_top_beats_random"] >= 0.8, measured
    assert measured["mean_drop_top"] > measured["mean_drop_random"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Trainer leaves models there)")
def test_the_runs_scoring_takes_a_model_the_trainer_left_on_the_gpu(real_data):
    """On a GPU machine the Trainer leaves the model on the GPU; the run then scores, calibrates and explains it with
    CPU arrays. Each of those must move the rows to the model and give the CPU figures back."""
    from music_genre.training.trainer import predict_probabilities

    folder = REPO / "space" / "model"
    # float32 on both devices, so the two agree to float32 rounding (bfloat16 is native on the GPU only).
    model = AutoModelForSequenceClassification.from_pretrained(folder, inference_dtype="float32").eval()
    extractor = GenreFeatureExtractor.from_pretrained(folder)
    rows = np.random.default_rng(0).choice(len(real_data.frame), 2000, replace=False)
    features, labels = extractor(real_data.frame.iloc[rows])["input_features"], real_data.labels[rows]
    on_cpu = predict_probabilities(model, features), calibration_report(model, features, labels)
    model.to("cuda")
    on_gpu = predict_probabilities(model, features), calibration_report(model, features, labels)
    np.testing.assert_allclose(on_gpu[0], on_cpu[0], atol=1e-4)
    assert on_gpu[1].keys() == on_cpu[1].keys()
    assert faithfulness(model, extractor, features[:200], seed=0)["rows"] == 200


def test_the_docs_trust_example_runs_on_a_calibrated_model(calibrated, tmp_path):
    model, extractor = calibrated
    save_model_folder(model, extractor, tmp_path)
    namespace: dict = {}
    exec(doc_block("trust-python").replace("path/or/hub-id", str(tmp_path)), namespace)
    classifier, song = namespace["classifier"], namespace["song"]
    assert namespace["genre_set"] == classifier(song, coverage=0.9) and namespace["genre_set"]
    scores = [genre["score"] for genre in namespace["genre_set"]]
    assert scores == sorted(scores, reverse=True)
    pushes = namespace["pushes"]
    assert list(pushes) == list(model.config.feature_names)
    typical = classifier(extractor.reference_row(), top_k=None)
    top = namespace["explained"][0]
    typical_score = next(genre["score"] for genre in typical if genre["label"] == top["label"])
    assert sum(pushes.values()) == pytest.approx(top["score"] - typical_score, abs=0.02)  # completeness
