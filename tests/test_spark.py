"""`classify_spark` on a local Spark cluster (`local[2]`, two executor Python workers): real rows of the CSV get the
bundled pipeline's predictions row for row, a bad row gets its reason in `error` instead of failing the job, and
wrong arguments are refused on the driver before any job starts. Needs Java (17+) on PATH or in JAVA_HOME and
pyspark (the `dev` and `spark` extras); without them the Spark tests skip, and fail under CI=true."""

import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from transformers import pipeline

from music_genre.spark import classify_batch
from tests.conftest import REPO
from tests.doc_blocks import doc_block

BUNDLED = REPO / "space" / "model"


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI runs the Spark tests")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        unavailable('pyspark is not installed (pip install -e ".[dev]")')
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and os.path.isfile(os.path.join(java_home, "bin", "java"))):
        unavailable("no Java on PATH or in JAVA_HOME (Spark runs on a JVM)")
    scratch = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("music-genre-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.network.timeout", "120s")
        .config("spark.executor.heartbeatInterval", "20s")
        .config("spark.sql.shuffle.partitions", "2")
        # A short-lived JVM on a small machine: the quick JIT tier only, one GC thread, no generated code per query.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.pyspark.python", sys.executable)  # the workers run this interpreter, with the project
        .config("spark.local.dir", str(scratch))
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def classifier():
    return pipeline(model=str(BUNDLED), trust_remote_code=True)


@pytest.fixture(scope="module")
def tracks(csv_path) -> pd.DataFrame:
    """300 real rows as read from the CSV (tempo as text, with its `?`), and two bad ones."""
    frame = pd.read_csv(csv_path, dtype={"tempo": str}).dropna(how="all").sample(300, random_state=7)
    frame = frame.astype({"instance_id": "int64"}).reset_index(drop=True)
    frame.loc[41, "tempo"] = "fast"
    frame.loc[250, "key"] = "H"
    return frame


def test_a_local_cluster_gives_the_pipelines_predictions_row_for_row(spark, classifier, tracks):
    from pyspark.sql import functions as F

    from music_genre.spark import classify_spark

    df = (
        spark.createDataFrame(tracks)
        # Carried columns of the types a catalogue holds: an integer with nulls, a timestamp, an array.
        .withColumn("even_id", F.when(F.col("instance_id") % 2 == 0, F.col("instance_id").cast("int")))
        .withColumn("seen", F.to_timestamp(F.lit("2024-05-01 12:00:00")))
        .withColumn("tags", F.array(F.col("music_genre"), F.lit("x")))
    )
    assert df.rdd.getNumPartitions() == 2  # a partition for each executor worker
    got = classify_spark(df, BUNDLED, top_k=2, coverage=0.9, batch_size=64).toPandas()
    assert list(got.columns) == [*tracks.columns, "even_id", "seen", "tags", "predicted_genre", "probability",
                                 "genre_2", "probability_2", "genre_set_90", "error"]  # fmt: skip
    got = got.set_index("instance_id").loc[tracks["instance_id"]].reset_index()
    assert len(got) == len(tracks) and got["artist_name"].tolist() == tracks["artist_name"].tolist()
    assert got["even_id"].fillna(-1).tolist() == [i if i % 2 == 0 else -1 for i in tracks["instance_id"]]
    assert (got["seen"] == pd.Timestamp("2024-05-01 12:00:00")).all()
    assert [list(tags) for tags in got["tags"]] == [[genre, "x"] for genre in tracks["music_genre"]]

    bad = [41, 250]
    assert got.loc[41, "error"] == "column 'tempo': 'fast' is not a number"
    assert got.loc[250, "error"].startswith("column 'key': unknown key 'H'; expected one of C, C#")
    assert got.loc[bad, ["predicted_genre", "probability", "genre_2", "genre_set_90"]].isna().all().all()

    good = tracks.drop(index=bad)
    ranked, sets = classifier(good, top_k=2), classifier(good, coverage=0.9)
    predicted = got.drop(index=bad)
    assert predicted["error"].isna().all()
    assert predicted["predicted_genre"].tolist() == [row[0]["label"] for row in ranked]
    assert predicted["genre_2"].tolist() == [row[1]["label"] for row in ranked]
    np.testing.assert_allclose(predicted["probability"], [row[0]["score"] for row in ranked], rtol=0, atol=1e-6)
    np.testing.assert_allclose(predicted["probability_2"], [row[1]["score"] for row in ranked], rtol=0, atol=1e-6)
    assert [list(genres) for genres in predicted["genre_set_90"]] == [[g["label"] for g in row] for row in sets]


def test_wrong_arguments_are_refused_before_a_job_starts(spark, tracks):
    from music_genre.spark import classify_spark

    df = spark.createDataFrame(tracks.head(5))
    with pytest.raises(ValueError, match=r"^the DataFrame lacks the feature column\(s\) tempo; the model reads"):
        classify_spark(df.drop("tempo"), BUNDLED)
    with pytest.raises(ValueError, match=r"has the column\(s\) 'probability', which the predictions use"):
        classify_spark(df.withColumnRenamed("music_genre", "probability"), BUNDLED)
    with pytest.raises(ValueError, match=r"^top_k must be a whole number of genres from 1 to the model's 10, got 11"):
        classify_spark(df, BUNDLED, top_k=11)
    with pytest.raises(ValueError, match=r"^batch_size must be a whole number of rows, 1 or more, got 0"):
        classify_spark(df, BUNDLED, batch_size=0)
    with pytest.raises(ValueError, match="coverage"):
        classify_spark(df, BUNDLED, coverage=1.5)
    with pytest.raises(ValueError, match=r"^feature column\(s\) of a type the model cannot read: tempo \(timestamp\);"):
        classify_spark(df.withColumn("tempo", df["tempo"].cast("timestamp")), BUNDLED)
    with pytest.raises(ValueError, match="is not a saved model folder: it lacks config.json"):
        classify_spark(df, REPO / "space")


def test_a_batch_with_many_bad_rows_names_each_and_classifies_the_rest(classifier, csv_path):
    """The executors' work without Spark: every refused row found (a refusal names one row at a time), every
    other row the pipeline's result."""
    rows = pd.read_csv(csv_path, dtype={"tempo": str}).dropna(how="all").head(200).reset_index(drop=True)
    rng = np.random.default_rng(0)
    bad = {int(i): column for i, column in zip(rng.choice(200, 60, replace=False), rng.choice(["tempo", "key"], 60))}
    for i, column in bad.items():
        rows.loc[i, column] = f"bad {i}"
    got = classify_batch(classifier, rows, top_k=3, coverage=None)
    assert len(got) == 200
    messages = {
        "tempo": "column 'tempo': 'bad {i}' is not a number",
        "key": "column 'key': unknown key 'bad {i}'; expected one of C, C#, D, D#, E, F, F#, G, G#, A, A#, B",
    }
    assert {i: got.loc[i, "error"] for i in bad} == {i: messages[column].format(i=i) for i, column in bad.items()}
    good = rows.drop(index=list(bad))
    ranked = classifier(good, top_k=3)
    assert got.drop(index=list(bad))["error"].isna().all()
    assert got.loc[good.index, "genre_3"].tolist() == [row[2]["label"] for row in ranked]
    np.testing.assert_allclose(got.loc[good.index, "probability"], [row[0]["score"] for row in ranked], atol=1e-6)


def test_the_docs_example_runs(spark, tracks, tmp_path):
    """docs/cluster.md's example, on a CSV of the rows above (read back by Spark as text) and the bundled model."""
    csv, output = tmp_path / "tracks.csv", tmp_path / "genres.parquet"
    tracks.to_csv(csv, index=False)
    code = doc_block("cluster-spark-python")
    for placeholder, path in (("tracks.csv", csv), ("genres.parquet", output), ("space/model", BUNDLED)):
        assert f'"{placeholder}"' in code
        code = code.replace(f'"{placeholder}"', repr(str(path)))
    exec(compile(code, "docs/cluster.md", "exec"), {})
    got = pd.read_parquet(output).set_index("instance_id").loc[tracks["instance_id"].astype(str)]
    assert got["track_name"].tolist() == tracks["track_name"].tolist()  # quoted names with commas and quotes kept
    assert got["error"].notna().tolist() == [i in (41, 250) for i in range(len(tracks))]
    assert got["genre_3"].notna().sum() == len(tracks) - 2


def test_a_column_of_one_wrong_value_is_refused_in_a_few_calls(classifier, csv_path):
    """Cells equal to a refused one (of its type: True equals 1 but is no key) share its reason, found at once."""
    rows = pd.read_csv(csv_path, dtype={"tempo": str}).dropna(how="all").head(300).reset_index(drop=True)
    rows["tempo"] = rows["tempo"].where(rows.index % 3 > 0, "fast")
    rows["key"] = rows["key"].astype(object).where(rows.index % 5 > 0, True).where(rows.index % 5 != 1, 1)
    calls = []

    class Counting:
        feature_extractor = classifier.feature_extractor

        def __call__(self, table, **kwargs):
            calls.append(len(table))
            return classifier(table, **kwargs)

    got = classify_batch(Counting(), rows, top_k=1, coverage=None)
    fast, true = rows.index % 3 == 0, rows.index % 5 == 0
    assert got.loc[fast, "error"].eq("column 'tempo': 'fast' is not a number").all()
    assert got.loc[~fast & true, "error"].str.startswith("column 'key': unknown key True").all()
    assert got.loc[~fast & ~true, "error"].isna().all() and got.loc[~fast & ~true, "predicted_genre"].notna().all()
    assert len(calls) <= 3, calls
