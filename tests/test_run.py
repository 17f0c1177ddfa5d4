"""The reproducible run end to end on a small real slice of the CSV (a few trials, two epochs)."""

import json
import shlex
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from transformers import Trainer

from music_genre import main
from music_genre.modeling import FEATURE_NAMES, GenreFeatureExtractor
from music_genre.training.data import load_data, prepare_splits
from music_genre.training.run import evaluate_folder
from music_genre.training.search import SearchSettings, load_study, run_search, search_trials
from music_genre.training.trainer import GenreTrainer, Hyperparameters, build_model, make_trainer
from tests.conftest import GENRES, HUB_FOLDER_FILES, RUN_FIGURES

MODEL_FILES = HUB_FOLDER_FILES | {"training_run.json"}


def train_args(data, output, n_trials: int = 3) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--output",
        str(output),
        "--seed",
        "5",
        "--n-trials",
        str(n_trials),
        "--max-epochs",
        "2",
        "--members",
        "2",
        "--reevaluate-top",
        "2",
        "--reevaluation-splits",
        "2",
    ]


@pytest.fixture(scope="module")
def run_dir(slice_csv, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "run"
    assert main(train_args(slice_csv, output)) == 0
    return output


def test_run_writes_every_file(run_dir, slice_csv):
    assert MODEL_FILES <= {p.name for p in (run_dir / "model").iterdir()}
    assert {p.name for p in (run_dir / "figures").iterdir()} == RUN_FIGURES
    for png in (run_dir / "figures").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert {"params_learning_rate", "params_n_layers", "params_dropout", "params_batch_size"} <= set(trials.columns)
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["rows_in"] == report["rows_kept"] == 2000
    assert report["sha256"] == load_data(slice_csv).sha256
    assert report["split_sizes"] == {"train": 1600, "validation": 200, "test": 200}
    assert not (run_dir / "checkpoints").exists()
    # The saved model serves in bfloat16 (the run's default), and its test metrics were measured that way.
    assert json.loads((run_dir / "model" / "config.json").read_text())["inference_dtype"] == "bfloat16"
    assert "--inference-dtype bfloat16" in json.loads((run_dir / "model" / "training_run.json").read_text())["command"]


def test_metrics_hold_the_papers_table_and_equal_a_recomputation(run_dir, slice_csv, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for stage in ("initial", "tuned"):
        stage_metrics = metrics[stage]
        for name in ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc_macro"):
            assert 0.0 <= stage_metrics[name] <= 1.0
        assert set(stage_metrics["per_genre"]) == set(GENRES)
        assert np.array(stage_metrics["confusion_matrix"]).sum() == 200
    assert metrics["seed"] == 5 and metrics["split_mode"] == "stratified"
    assert metrics["best_hyperparameters"] == metrics["tuned"]["hyperparameters"]
    recomputed = evaluate_folder(run_dir / "model", str(slice_csv))
    assert recomputed == {k: v for k, v in metrics["tuned"].items() if k != "hyperparameters"}
    assert main(["evaluate", "--model", str(run_dir / "model"), "--data", str(slice_csv), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tuned"]["accuracy"] == metrics["tuned"]["accuracy"]
    assert record["initial"]["accuracy"] == metrics["initial"]["accuracy"]
    assert main(["evaluate", "--model", str(run_dir / "model"), "--data", str(slice_csv)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["initial", "(run)", "tuned", "(now)"]
    stage_metrics = [f"{metrics[stage]['accuracy']:.4f}" for stage in ("initial", "tuned")]
    assert table[2].split() == ["accuracy", *stage_metrics]
    # Same machine as the run: the same dtype and device, and no note on figures that may differ.
    assert (record["evaluation"]["dtype"], record["evaluation"]["note"]) == (metrics["evaluation"]["dtype"], None)
    computed = metrics["evaluation"]
    assert f"computed in {computed['dtype']} on cpu ({computed['hardware']})" in table


def test_evaluate_says_when_it_computes_in_another_dtype_than_the_model_asks(tmp_path, monkeypatch):
    from music_genre.training import run

    (tmp_path / "config.json").write_text(json.dumps({"inference_dtype": "bfloat16"}))
    monkeypatch.setattr(run, "native_bfloat16", lambda device_type: False)
    alone = run._how_evaluated(tmp_path, None)
    assert (alone["dtype"], alone["inference_dtype"]) == ("float32", "bfloat16")
    assert "does not compute natively" in alone["note"] and "fourth decimal" in alone["note"]
    recorded = {"dtype": "bfloat16", "device": "cpu", "hardware": "a CPU with AMX, native bfloat16"}
    in_run = run._how_evaluated(tmp_path, recorded)
    assert in_run["note"].startswith("the run computed its figures in bfloat16 on cpu (a CPU with AMX")
    monkeypatch.setattr(run, "native_bfloat16", lambda device_type: True)
    assert run._how_evaluated(tmp_path, recorded)["note"] is None


def test_the_saved_model_is_calibrated_on_validation_and_metrics_report_it_on_test(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["calibration_temperature"] == metrics["calibration"]["temperature"] > 0
    assert config["conformal"]["n_calibration"] == 200  # the validation split
    for stage in ("before", "after"):
        stage_metrics = metrics["calibration"][stage]
        assert 0 <= stage_metrics["ece"] <= 1 and stage_metrics["nll"] > 0 and 0 <= stage_metrics["brier"] <= 2
    assert metrics["calibration"]["after"]["roc_auc_macro"] == pytest.approx(metrics["tuned"]["roc_auc_macro"])
    assert set(metrics["conformal"]) == {"0.8", "0.9", "0.95"}
    for stage_metrics in metrics["conformal"].values():
        assert 0 <= stage_metrics["coverage"] <= 1 and 1 <= stage_metrics["mean_set_size"] <= 10
        assert set(stage_metrics["per_genre_coverage"]) == set(GENRES)
    assert list(metrics["permutation_importance"]["features"]) == list(FEATURE_NAMES)


def test_evaluate_refuses_other_data(run_dir, slice_csv, tmp_path, capsys):
    changed = tmp_path / "changed.csv"
    changed.write_text(slice_csv.read_text().replace("Major", "Minor", 1))
    assert main(["evaluate", "--model", str(run_dir / "model"), "--data", str(changed)]) == 2
    assert "differs from the run's" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(run_dir / "model"), "--data", str(changed), "--allow-other-data"]) == 0


def run_dir_study(run_dir) -> optuna.Study:
    return load_study(SearchSettings(3, 5, str(run_dir / "optuna-study.journal"), "genre-ffn-stratified-seed5"))


def test_search_objective_is_a_validation_figure(run_dir):
    """A trial's value is the validation accuracy of its averaged weights (a count of the 200 validation rows, not
    one of its epochs' figures); the re-evaluation's are accuracies on 200 rows of further splits, and the final
    configuration is the candidate with the best mean."""
    study = run_dir_study(run_dir)
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert trial.value * 200 == pytest.approx(round(trial.value * 200), abs=1e-9)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    search = metrics["search"]
    assert search["best_validation"] == study.best_value
    candidates = search["reevaluation"]["candidates"]
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-t.value, t.user_attrs["slot"]))
    assert [c["slot"] for c in candidates] == [t.user_attrs["slot"] for t in ranked[:2]]
    for candidate in candidates:
        assert len(candidate["further_splits"]) == 2
        assert all(value * 200 == pytest.approx(round(value * 200), abs=1e-9) for value in candidate["further_splits"])
        assert candidate["mean"] == pytest.approx(np.mean(candidate["further_splits"]))
    assert search["chosen_trial"] == max(candidates, key=lambda c: c["mean"])["slot"]
    chosen = next(t for t in study.trials if t.user_attrs["slot"] == search["chosen_trial"])
    assert metrics["best_hyperparameters"]["dropout"] == chosen.params["dropout"]


class SearchEnded(BaseException):
    """Stops a run once its search has ended (a BaseException: the CLI turns every Exception into an exit code)."""


def test_the_search_neither_receives_nor_reads_the_test_split(run_dir, slice_csv, tmp_path, monkeypatch):
    """`run_dir`'s run again, its test split scrambled from the moment it is prepared: the search is handed train
    and validation only, and every trial (parameters, state, each epoch's validation figure) comes out identical, so
    no trial read a test row under any name; a search scoring on test would score the scrambled rows."""
    import music_genre.training.run

    def prepare_and_scramble(*args, **kwargs):
        prepared = prepare_splits(*args, **kwargs)
        features, labels, rows = (part["test"] for part in (prepared.features, prepared.labels, prepared.indices))
        # In place, so every reference to the test arrays, under whatever name, sees only the scrambled values.
        features[:] = np.random.default_rng(0).normal(size=features.shape)
        labels[:] = (labels + 1) % len(GENRES)
        rows[:] = prepared.indices["train"][: len(rows)]  # test rows read back from the frame are other rows
        return prepared

    searched = {}

    def search(prepared, *args, **kwargs):
        searched["splits"] = [set(part) for part in (prepared.indices, prepared.features, prepared.labels)]
        searched["study"] = run_search(prepared, *args, **kwargs)
        raise SearchEnded  # what follows the search is not under test here

    monkeypatch.setattr(music_genre.training.run, "prepare_splits", prepare_and_scramble)
    monkeypatch.setattr(music_genre.training.run, "run_search", search)
    with pytest.raises(SearchEnded):
        main(train_args(slice_csv, tmp_path / "scrambled"))
    assert searched["splits"] == [{"train", "validation"}] * 3

    def record(study: optuna.Study) -> list[tuple]:
        return [(t.params, t.state, t.value, t.intermediate_values) for t in search_trials(study)]

    assert len(record(searched["study"])) == 3
    assert record(searched["study"]) == record(run_dir_study(run_dir))


def test_metrics_record_how_the_test_metrics_were_computed_and_the_runs_compute_and_software(run_dir):
    from music_genre.modeling.modeling_genre_ffn import native_bfloat16
    from music_genre.training.environment import SOFTWARE

    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluation = metrics["evaluation"]
    # "cpu" on a GPU machine too: the run scores the trained model on the CPU it is served on (bench/gpu.md).
    assert evaluation["split"] == "test" and evaluation["rows"] == 200 and evaluation["device"] == "cpu"
    # The run's model is set to bfloat16; it computes so only where this CPU does bfloat16 natively.
    assert evaluation["dtype"] == ("bfloat16" if native_bfloat16("cpu") else "float32")
    assert evaluation["hardware"].endswith(", native bfloat16" if native_bfloat16("cpu") else ", no native bfloat16")
    compute = metrics["compute"]
    assert compute["wall_seconds"] >= compute["search_seconds"] + compute["final_training_seconds"] > 0
    assert compute["workers"] == 1
    assert set(metrics["software"]) == {"python", *SOFTWARE}
    assert metrics["software"]["torch"] == torch.__version__


def test_eda_writes_the_data_figures(slice_csv, tmp_path):
    assert main(["eda", "--data", str(slice_csv), "--output", str(tmp_path / "eda")]) == 0
    assert {p.name for p in (tmp_path / "eda").iterdir()} == {
        "log_transform.png", "pca.png", "tsne.png", "data_report.json",
    }  # fmt: skip
    assert json.loads((tmp_path / "eda" / "data_report.json").read_text())["rows_kept"] == 2000
    # The genre flags are train's: merged and kept genres, and the group split, as the figures' data report says.
    flags = ["--merge-genres", "Rap & Hip-Hop=Rap,Hip-Hop", "--genres", "Rap & Hip-Hop,Jazz,Blues", "--split", "group"]
    assert main(["eda", "--data", str(slice_csv), "--output", str(tmp_path / "merged"), *flags]) == 0
    report = json.loads((tmp_path / "merged" / "data_report.json").read_text())
    assert report["rows_per_genre"] == {"Rap & Hip-Hop": 400, "Jazz": 200, "Blues": 200}
    assert report["rows_dropped"]["genre_not_selected"] == 1200 and sum(report["split_sizes"].values()) == 800


def test_trainer_estimates_flos_as_transformers_does_counting_each_model_once(slice_csv, tmp_path):
    extractor = GenreFeatureExtractor(numeric_encoding="quantile-normal")
    prepared = prepare_splits(load_data(slice_csv), extractor, 0, "stratified")
    extractor = prepared.extractor
    settings = Hyperparameters(hidden_sizes=[16], epochs=1)
    trainer = make_trainer(prepared, extractor, settings, tmp_path, 0, keep_best=False, quiet=True)
    assert isinstance(trainer, GenreTrainer)
    batch = trainer.train_dataset.__getitems__(list(range(8)))
    assert trainer.floating_point_ops(batch) == Trainer.floating_point_ops(trainer, batch) > 0
    # A search swaps in a new model per trial: the count follows it.
    trainer.model = build_model(
        Hyperparameters(hidden_sizes=[32, 8], num_members=2), None, extractor.encoded_size, dict(enumerate(GENRES))
    )
    assert trainer.floating_point_ops(batch) == Trainer.floating_point_ops(trainer, batch)
    trainer.train()
    assert trainer.state.total_flos == 6 * len(prepared.labels["train"]) * batch["input_features"].shape[1] * (
        trainer.model.num_parameters()
    )


def test_the_clis_encodings_and_dtypes_are_the_librarys():
    """The cheap CLI lists them without importing modeling (which imports transformers)."""
    from music_genre.modeling.configuration_genre_ffn import INFERENCE_DTYPES
    from music_genre.modeling.feature_extraction_genre_ffn import ENCODINGS
    from music_genre.training import options

    assert options.ENCODINGS == ENCODINGS and options.INFERENCE_DTYPES == INFERENCE_DTYPES


def test_the_parser_and_the_recorded_command_come_from_the_run_options(tmp_path):
    from music_genre import build_parser
    from music_genre.training.options import RunOptions

    args = build_parser().parse_args(["train", "--data", "x.csv", "--members", "2", "--timeout", "9", "--fresh-study"])
    options = RunOptions.from_args(args)
    assert options == RunOptions(data="x.csv", num_members=2, timeout=9.0, fresh_study=True)
    # The command reparses to the same run (what --fresh-study instructs is not a setting of the run).
    again = RunOptions.from_args(build_parser().parse_args(shlex.split(options.command())[1:]))
    assert again == RunOptions(data="x.csv", num_members=2, timeout=9.0)
    assert options.command() == (
        "music-genre train --data x.csv --output runs/latest --seed 42 --split stratified --n-trials 30 "
        "--encoding quantile-normal+log-standard --members 2 --max-epochs 25 --inference-dtype bfloat16 "
        "--timeout 9.0 --trial-batch 8 --reevaluate-top 3 --reevaluation-splits 3 --workers 1"
    )
    absolute = RunOptions(data=str(tmp_path / "music_genre.csv"), output=tmp_path / "run", storage="sqlite:////x/y.db")
    assert "--data music_genre.csv --output run " in absolute.command() and "--storage sqlite://y.db" in (
        absolute.command()
    )
    assert str(tmp_path) not in json.dumps(absolute.public_settings(), default=str)


def test_a_run_leaves_the_callers_settings_as_they_were(slice_csv, tmp_path):
    """No hidden global state: the caller's torch threads and options are theirs again after a run, and the command
    gives the libraries' progress bars back as it found them."""
    import datasets
    import transformers

    from music_genre.training.options import RunOptions
    from music_genre.training.run import train_run

    options = RunOptions(
        data=str(slice_csv), output=tmp_path / "run", seed=3, n_trials=2, max_epochs=1, num_members=1, reevaluate_top=0
    )
    given = replace(options)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_run(options)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert options == given and options.data == str(slice_csv)
    # metrics.json records the threads the run trained on (train_run's default 1), not the caller's 2.
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["compute"]["torch_threads"] == 1
    # The run itself recorded the source the loader resolved, as a file name.
    command = json.loads((tmp_path / "run" / "model" / "training_run.json").read_text())["command"]
    assert command.startswith("music-genre train --data slice.csv --output run ") and "--members 1" in command

    transformers.utils.logging.enable_progress_bar()
    datasets.enable_progress_bars()
    assert main(["evaluate", "--model", str(tmp_path / "run" / "model"), "--data", str(slice_csv)]) == 0
    assert transformers.utils.logging.is_progress_bar_enabled() and not datasets.are_progress_bars_disabled()
