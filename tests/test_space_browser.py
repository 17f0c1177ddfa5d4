"""The Space in a real browser: Debian's chromium driven by Playwright, headless, on 127.0.0.1."""

import os
import shutil
from pathlib import Path

import pytest

from music_genre.space.app import UNIT_FEATURES, launch
from tests.conftest import free_port

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # raised inside gradio's queue

# A Chromium (or Chrome) binary: this variable, else `chromium` or `chromium-browser` on PATH.
CHROMIUM_VARIABLE = "CHROMIUM_PATH"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def find_chromium() -> Path | None:
    """The browser to drive: `CHROMIUM_PATH` if set (it must exist), else the first of CHROMIUM_NAMES on PATH."""
    if os.environ.get(CHROMIUM_VARIABLE):
        return Path(os.environ[CHROMIUM_VARIABLE])
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def require_chromium() -> Path:
    """The browser, else a skip, or under `CI=true` a failure: CI must run every test."""
    chromium = find_chromium()
    if chromium is None or not chromium.is_file():
        where = f"{CHROMIUM_VARIABLE}={chromium}" if chromium else f"none of {', '.join(CHROMIUM_NAMES)} on PATH"
        message = f"no Chromium to drive ({where}): `apt-get install chromium` or set {CHROMIUM_VARIABLE}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return chromium


@pytest.fixture(scope="module")
def browser():
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app_url(model_folder):  # noqa: F811
    port = free_port()
    demo = launch(model_folder, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_one_song_and_a_csv_in_the_browser(browser, app_url, local_pipeline, songs, songs_csv, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_url)
    page.get_by_label("Popularity (0-100)").fill("66")
    page.get_by_label("Duration (m:ss or seconds)").fill("6:31")
    page.get_by_label("Tempo (BPM)").fill("90")
    page.get_by_label("Loudness (dB)").fill("-21.9")
    page.get_by_label("Minor").check()
    page.get_by_role("button", name="Predict the genre").click()
    row = {name: 0.5 for name in UNIT_FEATURES}  # the sliders' defaults
    row.update(popularity=66, duration_ms=391_000.0, tempo=90, loudness=-21.9, key="C", mode="Minor")
    expected = local_pipeline(row)[0]["label"]
    page.wait_for_function(
        "expected => document.querySelector('[data-testid=label-output-value]')?.textContent.trim() === expected",
        arg=expected,
        timeout=30_000,
    )
    assert page.get_by_test_id("label-output-value").inner_text().strip() == expected
    # The 90 % genre set in words and the chart of what moved the top genre's probability.
    genre_set = [item["label"] for item in local_pipeline(row, coverage=0.9)]
    named = " or ".join(filter(None, [", ".join(genre_set[:-1]), genre_set[-1]]))
    page.get_by_text(f"90% genre set: most likely {named}.").wait_for(timeout=30_000)
    page.get_by_text(f"Why {expected}:").wait_for(timeout=30_000)
    bars = page.locator(".vega-embed").first
    bars.locator("canvas, svg").first.wait_for(timeout=30_000)
    assert bars.bounding_box()["height"] > 100
    page.screenshot(path=str(tmp_path / "one_song.png"), full_page=True)

    page.get_by_role("tab", name="Many songs").click()
    page.locator("input[type=file]").first.set_input_files(str(songs_csv))
    page.get_by_role("button", name="Predict the genres").click()
    page.get_by_text("Predicted 50 of 50 rows").wait_for(timeout=60_000)
    results = page.get_by_role("grid").first
    headers = [text.strip() for text in results.get_by_role("columnheader").all_inner_texts()]
    assert headers[:5] == ["row", "predicted_genre", "probability", "top_3", "genre_set_90"]
    assert "artist_name" in headers
    first_row = results.get_by_role("row").nth(1).get_by_role("gridcell").all_inner_texts()
    shown = dict(zip(headers, (cell.strip() for cell in first_row), strict=False))
    assert shown["predicted_genre"] == local_pipeline(songs.iloc[:1])[0][0]["label"]
    assert shown["genre_set_90"] == ", ".join(g["label"] for g in local_pipeline(songs.iloc[:1], coverage=0.9)[0])
    assert shown["artist_name"] == songs["artist_name"][0]
    # The pictures: a bar of songs per predicted genre, and the confusion matrix against `music_genre`.
    predicted = [genres[0]["label"] for genres in local_pipeline(songs)]
    chart = page.locator(".vega-embed").last  # the one-song tab's chart comes first in the page
    chart.wait_for(timeout=30_000)
    chart.locator("canvas, svg").first.wait_for(timeout=30_000)
    assert chart.bounding_box()["height"] > 100
    matrix = page.locator("table.confusion-matrix")
    matrix.wait_for(timeout=30_000)
    columns = [text.strip() for text in matrix.locator("thead th").all_inner_texts()][1:]
    assert sorted(columns) == sorted(local_pipeline.model.config.id2label.values())
    counts = {}
    for row in matrix.locator("tbody tr").all():
        true = row.locator("th").inner_text().strip()
        for predicted_genre, cell in zip(columns, row.locator("td").all_inner_texts(), strict=True):
            counts[(true, predicted_genre)] = int(cell.replace(",", ""))
    expected_counts = songs.assign(predicted=predicted).groupby(["music_genre", "predicted"]).size().to_dict()
    assert {pair: n for pair, n in counts.items() if n} == expected_counts
    page.screenshot(path=str(tmp_path / "many_songs.png"), full_page=True)
    for name in ("one_song.png", "many_songs.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    page.close()


def test_the_browser_is_found_by_variable_or_on_path(tmp_path, monkeypatch):
    monkeypatch.delenv(CHROMIUM_VARIABLE, raising=False)
    binary = tmp_path / "bin" / "chromium-browser"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(binary.parent))
    assert find_chromium() == binary
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_chromium() is None
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(tmp_path / "chrome"))
    assert find_chromium() == tmp_path / "chrome"


def test_under_ci_a_missing_browser_fails_instead_of_skipping(tmp_path, monkeypatch):
    monkeypatch.delenv(CHROMIUM_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no Chromium to drive"):
        require_chromium()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no Chromium to drive"):
        require_chromium()
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(tmp_path / "missing-chrome"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CHROMIUM_PATH="):
        require_chromium()
