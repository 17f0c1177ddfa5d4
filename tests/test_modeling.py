import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline

from music_genre.modeling import (
    TASK,
    GenreClassificationPipeline,
    GenreFeatureExtractor,
    GenreFFNConfig,
    GenreFFNForSequenceClassification,
    save_model_folder,
)
from tests.conftest import GENRES, HUB_FOLDER_FILES, load_in_clean_process, make_model


def test_network_is_linear_batchnorm_relu_dropout_blocks():
    model = make_model(hidden_sizes=[512, 128, 64], dropout=0.125)
    layers = list(model.members[0])
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 3 + ["Linear"]
    assert [layer.out_features for layer in layers if isinstance(layer, torch.nn.Linear)] == [512, 128, 64, 10]
    assert layers[3].p == 0.125
    assert model.config.id2label[9] == GENRES[9] and model.config.num_labels == 10


def test_loss_is_class_weighted_cross_entropy():
    weights = [0.5, 1, 1.5, 2, 1, 1, 1, 1, 1, 3]
    model = make_model(class_weights=weights)
    x, y = torch.randn(16, model.config.input_size), torch.arange(16) % 10
    output = model(input_features=x, labels=y)
    expected = F.cross_entropy(output.logits, y, weight=torch.tensor(weights))
    torch.testing.assert_close(output.loss, expected)
    assert model(input_features=x).loss is None


def test_ensemble_averages_member_probabilities():
    model = make_model(num_members=3)
    x = torch.randn(8, model.config.input_size)
    mean = torch.stack([member(x).softmax(-1) for member in model.members]).mean(0)
    torch.testing.assert_close(model(input_features=x).logits.softmax(-1), mean)


@pytest.mark.parametrize("members", [1, 3])
def test_save_and_load_give_identical_logits(tmp_path, members):
    model = make_model(num_members=members, class_weights=[1.0] * 10)
    x = torch.randn(32, model.config.input_size)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is GenreFFNForSequenceClassification
    torch.testing.assert_close(reloaded(input_features=x).logits, model(input_features=x).logits, rtol=0, atol=0)
    assert AutoConfig.from_pretrained(tmp_path).num_members == members


def test_pipeline_returns_genres_best_first(raw_rows):
    extractor = GenreFeatureExtractor().fit(raw_rows)
    classifier = pipeline(model=make_model(), feature_extractor=extractor, task="music-genre-classification")
    one = classifier(raw_rows[0], top_k=3)
    assert [set(item) for item in one] == [{"label", "score"}] * 3
    scores = [item["score"] for item in one]
    assert scores == sorted(scores, reverse=True)
    every = classifier(raw_rows, top_k=None)
    assert len(every) == len(raw_rows) and all(len(genres) == 10 for genres in every)
    # By default the most probable genre only, as transformers' text-classification pipeline.
    top = classifier(raw_rows)
    assert [[g["label"] for g in genres] for genres in top] == [[genres[0]["label"]] for genres in every]
    assert [genres[0]["score"] for genres in top] == pytest.approx([genres[0]["score"] for genres in every], abs=1e-5)
    assert len(classifier(raw_rows[0])) == 1
    assert [g["label"] for g in every[0][:3]] == [g["label"] for g in one]
    assert [g["score"] for g in every[0][:3]] == pytest.approx(scores, abs=1e-6)
    assert sum(item["score"] for item in every[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="column 'key', row 0: unknown key 'H'"):
        classifier(dict(raw_rows[0], key="H"))


def test_pipeline_runs_both_encoding_views_and_refuses_a_mismatched_extractor(raw_rows):
    both = GenreFeatureExtractor(numeric_encoding="quantile-normal+log-standard").fit(raw_rows)
    model = make_model(input_size=both.encoded_size)
    classifier = pipeline(model=model, feature_extractor=both, task="music-genre-classification")
    assert len(classifier(raw_rows)) == len(raw_rows)
    paper = GenreFeatureExtractor().fit(raw_rows)  # 24 columns for a model that takes 35
    with pytest.raises(ValueError, match="model takes 35 encoded columns .* 'log-standard' encoding makes 24"):
        pipeline(model=model, feature_extractor=paper, task="music-genre-classification")
    # The model itself refuses encoded rows of another width.
    with pytest.raises(ValueError, match="input_features has 24 columns but this model takes 35"):
        model(**paper(raw_rows[0], return_tensors="pt"))


def test_the_pipeline_refuses_an_extractor_for_other_columns_or_none(raw_rows, tmp_path):
    extractor = GenreFeatureExtractor().fit(raw_rows)
    renamed = [*GenreFFNConfig().feature_names[:-1], "mood"]
    with pytest.raises(ValueError, match=r"the model reads the columns \[.*'mood'\] \(config.feature_names\) but the "
                       r"feature extractor encodes \['popularity'.*'valence'\]"):  # fmt: skip
        pipeline(model=make_model(feature_names=renamed), feature_extractor=extractor, task=TASK)
    # The same check when a saved folder is loaded.
    save_model_folder(make_model(), extractor, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "feature_names": renamed}))
    with pytest.raises(ValueError, match="config.feature_names"):
        pipeline(model=str(tmp_path), trust_remote_code=True)
    with pytest.raises(ValueError, match="feature extractor saved with the model .*none was given"):
        GenreClassificationPipeline(model=make_model(), task=TASK)


def test_remote_code_folder_loads_without_the_project(tmp_path, raw_rows):
    extractor = GenreFeatureExtractor(numeric_encoding="quantile-normal", n_quantiles=8).fit(raw_rows)
    model = make_model(num_members=2)
    save_model_folder(model, extractor, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= HUB_FOLDER_FILES
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pkl"))
    remote = load_in_clean_process(tmp_path, raw_rows)
    assert remote["model_class"].startswith("transformers_modules.")
    with torch.no_grad():
        local = model(**extractor(raw_rows, return_tensors="pt")).logits.softmax(-1).numpy()
    np.testing.assert_allclose(remote["probabilities"], local, rtol=1e-5, atol=1e-6)
    local_pipeline = pipeline(model=model, feature_extractor=extractor, task="music-genre-classification")
    expected = local_pipeline(raw_rows, top_k=2)
    assert [[g["label"] for g in row] for row in remote["pipeline"]] == [[g["label"] for g in row] for row in expected]
    assert remote["pipeline_by_task"] == remote["pipeline"]
    # One task in config.json, so a task-less `pipeline(model=...)` can infer it; the old name works in-process.
    assert json.loads((tmp_path / "config.json").read_text())["custom_pipelines"].keys() == {"tabular-classification"}
    assert AutoFeatureExtractor.from_pretrained(tmp_path).to_dict()["quantiles"] == extractor.quantiles


def test_remote_code_imports_only_transformers_torch_numpy_and_itself():
    import ast

    from tests.conftest import REPO

    allowed = {"transformers", "torch", "numpy"} | set(sys.stdlib_module_names)
    for path in (REPO / "modeling").glob("*_genre_ffn.py"):
        tree = ast.parse(path.read_text())
        # Optional: captum (explain=True), imported in a try whose ImportError names what to install.
        optional = {
            id(statement)
            for node in ast.walk(tree)
            if isinstance(node, ast.Try) and any(ast.unparse(h.type or node) == "ImportError" for h in node.handlers)
            for statement in node.body
            if isinstance(statement, ast.ImportFrom) and statement.module == "captum.attr"
        }
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = set() if node.level else {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"


@pytest.mark.parametrize("ensemble", ["independent", "tabm", "tabm-mini"])
def test_large_tables_are_classified_in_folded_slices_with_the_same_result(ensemble):
    from music_genre.modeling.modeling_genre_ffn import INFERENCE_CHUNK

    model = make_model(num_members=2, ensemble=ensemble)
    x = torch.randn(3 * INFERENCE_CHUNK + 7, model.config.input_size)
    model.train()(input_features=x * 2 + 1)  # BatchNorm statistics away from 0 and 1, so folding them is tested
    model.eval()
    with torch.no_grad():
        whole = model.member_logits(x).softmax(-1).mean(0)  # the modules themselves, in one piece
        sliced = model(input_features=x).logits.softmax(-1)  # the folded copy, slice by slice
    torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-5)
    model.train()
    assert model(input_features=x[:64], labels=torch.zeros(64, dtype=torch.long)).loss.requires_grad


@pytest.mark.parametrize("rows", [1, 2048])
def test_bfloat16_inference_is_saved_used_in_eval_only_and_close_to_float32(tmp_path, monkeypatch, rows):
    import music_genre.modeling.modeling_genre_ffn as modeling_module

    with pytest.raises(ValueError, match="inference_dtype must be one of"):
        GenreFFNConfig(inference_dtype="float16")
    fp32 = make_model(num_members=3)
    bf16 = make_model(num_members=3, inference_dtype="bfloat16")
    x = torch.randn(rows, fp32.config.input_size)
    bf16.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["inference_dtype"] == "bfloat16"
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.inference_dtype == "bfloat16"

    monkeypatch.setattr(modeling_module, "native_bfloat16", lambda device_type: True)
    with torch.no_grad():
        exact, low = fp32(input_features=x).logits, reloaded(input_features=x).logits
    assert low.dtype == torch.float32 and not torch.equal(low, exact)  # bfloat16 really ran
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0.05)
    assert (low.argmax(-1) == exact.argmax(-1)).float().mean() > 0.97
    # The members are left in float32: inference uses folded bfloat16 copies of them.
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}
    # Training computes in float32 whatever the setting: same loss as the float32 model.
    reloaded.train(), fp32.train()
    batch, y = torch.randn(64, fp32.config.input_size), torch.arange(64) % 10
    torch.manual_seed(1)
    train_loss = reloaded(input_features=batch, labels=y).loss
    torch.manual_seed(1)
    torch.testing.assert_close(train_loss, fp32(input_features=batch, labels=y).loss, rtol=0, atol=0)

    # Without native bfloat16 the setting falls back to float32 (both saw the same training batch): equal to float
    # rounding, where bfloat16 is off by about 1e-2.
    reloaded.eval(), fp32.eval()
    monkeypatch.setattr(modeling_module, "native_bfloat16", lambda device_type: False)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_features=x).logits, fp32(input_features=x).logits)


def test_the_folded_inference_copy_is_refreshed_through_public_means(tmp_path):
    """The folded copy is made at the first large eval call and kept; `eval()`, `train()`, `load_state_dict` and
    `refresh_inference_copy()` drop it, and a parameter moved to other memory (`.to`, `.double()`) is followed."""
    from music_genre.modeling.modeling_genre_ffn import INFERENCE_CHUNK

    model = make_model(num_members=2)
    x = torch.randn(INFERENCE_CHUNK + 1, model.config.input_size)  # large enough for the folded path

    def unfolded() -> torch.Tensor:
        return model.member_logits(x).softmax(-1).mean(0)

    with torch.no_grad():
        before = model(input_features=x).logits
        model.members[0][0].weight.mul_(2.0)  # in place, in eval mode: seen once the copy is refreshed
        assert not torch.allclose(unfolded(), before.softmax(-1), atol=1e-4)
        for refresh in (model.refresh_inference_copy, model.eval):
            model.members[0][0].weight.mul_(1.5)
            refresh()
            torch.testing.assert_close(model(input_features=x).logits.softmax(-1), unfolded(), rtol=1e-4, atol=1e-5)
        model.double().float()  # new storage for every parameter: a new copy without being asked
        model.members[1][0].weight.mul_(0.5)
        model.double().float()
        torch.testing.assert_close(model(input_features=x).logits.softmax(-1), unfolded(), rtol=1e-4, atol=1e-5)
    # Loading other weights is seen the same way; the cache is never saved.
    other = make_model(num_members=2)
    torch.nn.init.normal_(other.members[1][4].weight)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(input_features=x).logits, other(input_features=x).logits)
    model.save_pretrained(tmp_path)
    assert set(model.state_dict()) == set(other.state_dict())


def test_the_remote_code_reads_no_private_torch_attributes():
    """The folded copy used to key on `layer._parameters`, `layer._buffers` and each tensor's `_version`; the remote
    code now refreshes it through public means only."""
    import ast

    from tests.conftest import REPO

    tree = ast.parse((REPO / "modeling" / "modeling_genre_ffn.py").read_text())
    private = {"_parameters", "_buffers", "_version", "_modules", "_apply"}
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & private
    assert not used, f"modeling_genre_ffn.py reads torch internals {sorted(used)}"


def test_the_folded_copy_follows_batch_norm_statistics_a_training_step_and_loaded_weights():
    from music_genre.modeling.modeling_genre_ffn import INFERENCE_CHUNK

    model = make_model(num_members=2)
    x = torch.randn(INFERENCE_CHUNK + 1, model.config.input_size)  # large enough for the folded path
    batch, labels = torch.randn(64, model.config.input_size) * 3 + 1, torch.arange(64) % 10
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)

    def statistics_only() -> None:
        model.train()(input_features=batch)  # moves BatchNorm's running statistics, no weight changes

    def training_step() -> None:
        model.train()(input_features=batch, labels=labels).loss.backward()
        optimizer.step()

    def other_weights() -> None:
        other = make_model(num_members=2)
        torch.nn.init.normal_(other.members[0][0].weight)
        model.load_state_dict(other.state_dict())

    def unfolded() -> torch.Tensor:
        return torch.stack([member(x).softmax(-1) for member in model.members]).mean(0)

    with torch.no_grad():
        model(input_features=x)  # the folded copy is built and cached
        previous = unfolded()
    for change in (statistics_only, training_step, other_weights):
        change()
        model.eval()
        with torch.no_grad():
            expected = unfolded()
            assert not torch.allclose(expected, previous, atol=1e-4), f"{change.__name__} changed nothing"
            served = model(input_features=x).logits.softmax(-1)
        torch.testing.assert_close(
            served, expected, rtol=1e-4, atol=1e-5, msg=f"stale folded copy after {change.__name__}"
        )
        previous = expected


# TabM-style ensembles and numeric embeddings (config.ensemble, config.numeric_embedding).


def _bins(columns: int, seed: int = 0) -> list[list[float]]:
    from music_genre.modeling.configuration_genre_ffn import piecewise_linear_bins

    return piecewise_linear_bins(torch.randn(500, columns, generator=torch.Generator().manual_seed(seed)).numpy(), 8)


def _options(ensemble: str, embedding: str | None, members: int = 3) -> dict:
    from music_genre.modeling.configuration_genre_ffn import numeric_columns

    options = {"ensemble": ensemble, "num_members": members, "numeric_embedding": embedding, "embedding_size": 4}
    if embedding == "piecewise-linear":
        options["embedding_bins"] = _bins(numeric_columns(GenreFFNConfig().input_size))
    return options


OPTION_CASES = [
    ("tabm", None),
    ("tabm", "piecewise-linear"),
    ("tabm-mini", "periodic"),
    ("independent", "piecewise-linear"),
]


@pytest.mark.parametrize(("ensemble", "embedding"), OPTION_CASES)
def test_every_option_trains_on_the_mean_of_member_losses_and_serves_averaged_probabilities(ensemble, embedding):
    model = make_model(dropout=0.0, class_weights=[0.5, 1, 1.5, 2, 1, 1, 1, 1, 1, 3], **_options(ensemble, embedding))
    x, y = torch.randn(32, model.config.input_size), torch.arange(32) % 10
    model.train()
    members = model.member_logits(x)
    assert members.shape == (3, 32, 10)
    assert not torch.allclose(members[0], members[1])  # the members differ from the start (their scalings)
    expected = torch.stack([F.cross_entropy(z, y, weight=model.class_weights) for z in members]).mean()
    torch.testing.assert_close(model(input_features=x, labels=y).loss, expected)
    model.eval()
    with torch.no_grad():
        served = model(input_features=x).logits
        torch.testing.assert_close(served.softmax(-1), model.member_logits(x).softmax(-1).mean(0))
    assert served.shape == (32, 10)


def test_tabm_members_share_their_weight_matrices_and_normalise_their_own_activations():
    model = make_model(hidden_sizes=[16, 8], dropout=0.0, ensemble="tabm", num_members=4)
    first = model.ensemble.blocks[0]
    linear, norm = first[0], first[1]
    assert [type(layer).__name__ for layer in first] == ["BatchEnsembleLinear", "MemberBatchNorm", "ReLU", "Dropout"]
    assert linear.weight.shape == (16, model.config.input_size)  # one matrix for the 4 members
    assert linear.r.shape == (4, model.config.input_size) and linear.s.shape == linear.bias.shape == (4, 16)
    assert set(linear.r.detach().flatten().tolist()) <= {-1.0, 1.0}  # TabM's random-sign start
    assert norm.num_features == 4 * 16
    # Per-member BatchNorm: in training, a member's logits do not depend on another member's weights.
    x = torch.randn(64, model.config.input_size)
    model.train()
    before = model.member_logits(x)
    with torch.no_grad():
        linear.s[1].mul_(3.0)
    after = model.member_logits(x)
    torch.testing.assert_close(after[[0, 2, 3]], before[[0, 2, 3]])
    assert not torch.allclose(after[1], before[1])
    mini = make_model(hidden_sizes=[16, 8], ensemble="tabm-mini", num_members=4)
    assert type(mini.ensemble.blocks[0][0]) is torch.nn.Linear and mini.ensemble.scaling.r.shape[0] == 4


@pytest.mark.parametrize(("ensemble", "embedding"), OPTION_CASES)
def test_every_option_saves_and_loads_with_its_bins_and_the_same_outputs(tmp_path, ensemble, embedding):
    from music_genre.modeling.modeling_genre_ffn import INFERENCE_CHUNK

    model = make_model(class_weights=[1.0 + i for i in range(10)], **_options(ensemble, embedding))
    x = torch.randn(INFERENCE_CHUNK + 5, model.config.input_size)
    model.train()(input_features=x)  # BatchNorm statistics of their own
    model.eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["ensemble"] == ensemble and saved["numeric_embedding"] == embedding
    assert saved["embedding_bins"] == model.config.embedding_bins
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    # Derived, unsaved tensors are rebuilt from the config, not left as loading's placeholders.
    torch.testing.assert_close(reloaded.class_weights, model.class_weights, rtol=0, atol=0)
    if embedding == "piecewise-linear":
        for name in ("scale", "shift", "lower", "upper"):
            torch.testing.assert_close(
                getattr(reloaded.numeric_embedding, name), getattr(model.numeric_embedding, name), rtol=0, atol=0
            )
    with torch.no_grad():
        for rows in (x[:7], x):  # the modules themselves, and the folded copy
            torch.testing.assert_close(
                reloaded(input_features=rows).logits, model(input_features=rows).logits, rtol=0, atol=0
            )


def test_a_tabm_model_with_piecewise_linear_embeddings_loads_as_remote_code_without_the_project(tmp_path, raw_rows):
    from music_genre.modeling.configuration_genre_ffn import numeric_columns, piecewise_linear_bins

    extractor = GenreFeatureExtractor(numeric_encoding="quantile-normal", n_quantiles=8).fit(raw_rows)
    encoded = extractor(raw_rows)["input_features"]
    bins = piecewise_linear_bins(encoded[:, : numeric_columns(extractor.encoded_size)], 4)
    model = make_model(
        input_size=extractor.encoded_size, ensemble="tabm", num_members=4, numeric_embedding="piecewise-linear",
        embedding_bins=bins, inference_dtype="bfloat16",
    )  # fmt: skip
    save_model_folder(model, extractor, tmp_path)
    remote = load_in_clean_process(tmp_path, raw_rows)
    assert remote["model_class"].startswith("transformers_modules.")
    with torch.no_grad():
        local = model(**extractor(raw_rows, return_tensors="pt")).logits.softmax(-1).numpy()
    np.testing.assert_allclose(remote["probabilities"], local, rtol=1e-5, atol=1e-6)


def test_piecewise_linear_encoding_is_rtdls():
    """Each bin's component: 1 below the value's bin, the fraction reached inside it, 0 above; the first bin
    extrapolates down and the last up; a column with fewer bins pads in the middle (rtdl_num_embeddings' layout)."""
    from music_genre.modeling.modeling_genre_ffn import PiecewiseLinearEmbedding

    embedding = PiecewiseLinearEmbedding([[0.0, 1.0, 2.0, 4.0], [0.0, 10.0]], size=2)
    x = torch.tensor([[-1.0, -5.0], [0.5, 5.0], [3.0, 20.0], [6.0, 0.0]])
    encoded = torch.clamp(torch.addcmul(embedding.shift, embedding.scale, x.unsqueeze(-1)), embedding.lower,
                          embedding.upper)  # fmt: skip
    expected_first = [[-1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 1.0, 0.5], [1.0, 1.0, 2.0]]
    expected_second = [[0.0, 0.0, -0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]
    torch.testing.assert_close(encoded[:, 0], torch.tensor(expected_first))
    torch.testing.assert_close(encoded[:, 1], torch.tensor(expected_second))


def test_the_new_options_are_validated_with_the_setting_named():
    numeric = 11
    with pytest.raises(ValueError, match="ensemble must be one of"):
        GenreFFNConfig(ensemble="bagging")
    with pytest.raises(ValueError, match="numeric_embedding must be None or one of"):
        GenreFFNConfig(numeric_embedding="linear")
    with pytest.raises(ValueError, match="num_members must be a positive integer, got 0"):
        GenreFFNConfig(num_members=0)
    with pytest.raises(ValueError, match=f"bin edges of each of the {numeric} numeric columns, got 3"):
        GenreFFNConfig(numeric_embedding="piecewise-linear", embedding_bins=_bins(3))
    with pytest.raises(ValueError, match=f"bin edges of each of the {numeric} numeric columns, got NoneType"):
        GenreFFNConfig(numeric_embedding="piecewise-linear")
    decreasing = _bins(numeric)
    decreasing[4] = decreasing[4][::-1]
    with pytest.raises(ValueError, match=r"embedding_bins\[4\]: the edges must increase strictly"):
        GenreFFNConfig(numeric_embedding="piecewise-linear", embedding_bins=decreasing)
    with pytest.raises(ValueError, match="embedding_bins are for numeric_embedding='piecewise-linear', not None"):
        GenreFFNConfig(embedding_bins=_bins(numeric))
    with pytest.raises(ValueError, match="periodic_scale must be a positive finite number"):
        GenreFFNConfig(numeric_embedding="periodic", periodic_scale=0)


def test_the_defaults_are_independent_members_computed_in_plain_torch(tmp_path):
    """The paper's behaviour by default: independent members on the encoded columns as they are. A saved model's
    float32 logits are those of its members computed layer by layer from its safetensors, in plain torch (batch-norm
    statistics set away from their initial values, so that they count)."""
    from safetensors.torch import load_file

    from tests.conftest import make_model

    config = GenreFFNConfig()
    assert (config.ensemble, config.numeric_embedding, config.embedding_bins) == ("independent", None, None)
    saved = make_model(hidden_sizes=[64, 32, 16], num_members=3, calibration_temperature=1.3)
    with torch.no_grad():
        for module in saved.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
                module.bias.normal_()
    saved.save_pretrained(tmp_path)
    folder = tmp_path
    model = GenreFFNForSequenceClassification.from_pretrained(folder).eval()
    assert model.config.ensemble == "independent" and model.config.num_members == 3
    weights = load_file(folder / "model.safetensors")
    assert set(weights) == set(model.state_dict())
    model.config.inference_dtype = "float32"
    x = torch.randn(64, model.config.input_size)
    members = []
    for m in range(model.config.num_members):
        h = x
        for i in range(len(model.config.hidden_sizes)):
            w = {name: weights[f"members.{m}.{4 * i + part}.{name}"] for part, name in ((0, "weight"), (0, "bias"))}
            h = h @ w["weight"].T + w["bias"]
            norm = {name: weights[f"members.{m}.{4 * i + 1}.{name}"] for name in
                    ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
            h = torch.relu((h - norm["running_mean"]) / torch.sqrt(norm["running_var"] + 1e-5) * norm["weight"]
                           + norm["bias"])  # fmt: skip
        last = 4 * len(model.config.hidden_sizes)
        members.append(h @ weights[f"members.{m}.{last}.weight"].T + weights[f"members.{m}.{last}.bias"])
    expected = torch.stack(members).softmax(-1).mean(0)
    with torch.no_grad():
        served = (model(input_features=x).logits * model.config.calibration_temperature).softmax(-1)
    torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-6)
