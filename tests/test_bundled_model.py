"""The trained model bundled in space/model: its card states the metrics its run measured, and they reproduce."""

import json
import re

import pytest
from huggingface_hub import ModelCard

from music_genre.hub_card import BUNDLED_REPO_ID
from music_genre.hub_card.card import default_dataset_repo_id, model_repo_pages
from music_genre.modeling.modeling_genre_ffn import native_bfloat16
from music_genre.training.run import evaluate_folder
from tests.conftest import REPO

BUNDLED = REPO / "space" / "model"


def stated_metrics() -> tuple[dict, str]:
    card = ModelCard.load(BUNDLED / "README.md")
    return {result.metric_type: result.metric_value for result in card.data.eval_results}, card.text


def test_the_card_metrics_are_recomputed_from_the_csv(csv_path):
    config = json.loads((BUNDLED / "config.json").read_text())
    if config.get("inference_dtype", "float32") == "bfloat16" and not native_bfloat16("cpu"):
        pytest.skip("this CPU has no native bfloat16, so it cannot make the run's computation (see the next test)")
    stated, text = stated_metrics()
    run = json.loads((BUNDLED / "training_run.json").read_text())
    assert run["data_sha256"] == "6e1a77a46c88226e24aa36facf81235315b4680054bc7f3d3c609c1b05711078"
    recomputed = evaluate_folder(BUNDLED, str(csv_path))
    assert recomputed["rows"] == 5_000
    assert stated["accuracy"] == pytest.approx(recomputed["accuracy"], abs=1e-12)
    assert stated["f1"] == pytest.approx(recomputed["f1_weighted"], abs=1e-12)
    # Folding BatchNorm for large tables moves probabilities by float rounding, so AUC ranks may swap near-ties.
    assert stated["roc_auc"] == pytest.approx(recomputed["roc_auc_macro"], abs=1e-6)
    assert f"{recomputed['accuracy']:.4f}" in text  # the results table a reader sees
    # The songs no training or validation row holds: the run's count and figures, as evaluate measures them again.
    recorded = json.loads((BUNDLED / "reports" / "metrics.json").read_text())["tuned"]["unseen_songs"]
    assert recorded["rows"] == recomputed["unseen_songs"]["rows"] > 4_000
    assert recorded["accuracy"] == pytest.approx(recomputed["unseen_songs"]["accuracy"], abs=1e-12)
    assert f"On the {recorded['rows']} test rows" in text and f"accuracy {recorded['accuracy']:.4f}" in text


def test_a_cpu_without_native_bfloat16_computes_nearly_the_same_metrics_in_float32(csv_path, monkeypatch):
    import music_genre.modeling.modeling_genre_ffn as modeling_module

    monkeypatch.setattr(modeling_module, "native_bfloat16", lambda device_type: False)
    stated, _ = stated_metrics()
    recomputed = evaluate_folder(BUNDLED, str(csv_path))
    assert recomputed["roc_auc_macro"] != stated["roc_auc"]  # float32 really ran: other probabilities
    assert stated["accuracy"] == pytest.approx(recomputed["accuracy"], abs=0.003)
    assert stated["f1"] == pytest.approx(recomputed["f1_weighted"], abs=0.003)
    assert stated["roc_auc"] == pytest.approx(recomputed["roc_auc_macro"], abs=5e-4)


def test_the_card_says_how_far_its_command_reproduces_the_model():
    _, text = stated_metrics()
    command = json.loads((BUNDLED / "training_run.json").read_text())["command"]
    assert command in text
    # The batch-synchronous search makes the same model with any number of workers; an older run said it did not.
    assert "--trial-batch" in command and "whatever the number of workers" in " ".join(text.split())
    assert "With several search workers" not in text


def test_the_bundled_folder_is_complete_and_unpickled():
    names = {path.name for path in BUNDLED.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "training_run.json"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pkl", ".pt", ".joblib"))]
    for page in ["README.md", *(path.relative_to(BUNDLED).as_posix() for path in BUNDLED.glob("reports/*.md"))]:
        for link in re.findall(r"\]\(<?([^)>#]+)", (BUNDLED / page).read_text()):
            if not link.startswith(("http://", "https://")):
                assert ((BUNDLED / page).parent / link).is_file(), f"{page} links {link}, which space/model lacks"


def test_the_committed_card_and_reports_are_what_the_templates_render_from_the_bundled_records():
    """The card is generated, never edited: after a change to hub_card/templates/ or hub_card/card.py,
    `music-genre bundle --card-only` renders it again from the run's records the bundle ships in reports/."""
    assert (BUNDLED / "reports" / "metrics.json").is_file(), (
        "space/model/reports/ lacks the run's records the card is rendered from: bundle the model from its run "
        "(`music-genre bundle --run RUN`)"
    )
    pages = model_repo_pages(BUNDLED, BUNDLED_REPO_ID, default_dataset_repo_id(BUNDLED_REPO_ID))
    for name, text in pages.items():
        assert (BUNDLED / name).read_bytes() == text.encode("utf-8"), (
            f"space/model/{name} is not what the current templates render: run `music-genre bundle --card-only`"
        )
    assert len(pages["README.md"].splitlines()) <= 300


def test_the_bundled_remote_code_is_the_projects():
    """The bundled folder runs today's modeling/ code; after a change, regenerate it from a run folder with
    `music-genre bundle --run RUN`, or `music-genre bundle --code-only` when the weights and config are unaffected
    (the figure tests above then check that the bundled model still computes what its card states)."""
    for source in (REPO / "modeling").glob("*_genre_ffn.py"):
        assert (BUNDLED / source.name).read_text() == source.read_text(), (
            f"space/model/{source.name} is stale: `music-genre bundle --code-only` copies today's remote code, "
            "`music-genre bundle --run RUN` regenerates space/model/ from a run"
        )
