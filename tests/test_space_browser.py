"""The Space in a real browser: Debian's chromium driven by Playwright, headless, on 127.0.0.1."""

import os
from pathlib import Path

import pytest

from space.app import UNIT_FEATURES, launch
from tests.test_space import free_port, local_pipeline, model_folder, songs, songs_csv  # noqa: F401  (shared fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # raised inside gradio's queue

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)")
        pytest.skip("no /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
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
    page.screenshot(path=str(tmp_path / "one_song.png"), full_page=True)

    page.get_by_role("tab", name="Many songs").click()
    page.locator("input[type=file]").first.set_input_files(str(songs_csv))
    page.get_by_role("button", name="Predict the genres").click()
    page.get_by_text("Predicted 50 of 50 rows").wait_for(timeout=60_000)
    results = page.get_by_role("grid").first
    headers = [text.strip() for text in results.get_by_role("columnheader").all_inner_texts()]
    assert headers[:4] == ["row", "predicted_genre", "probability", "top_3"] and "artist_name" in headers
    first_row = results.get_by_role("row").nth(1).get_by_role("gridcell").all_inner_texts()
    shown = dict(zip(headers, (cell.strip() for cell in first_row), strict=False))
    assert shown["predicted_genre"] == local_pipeline(songs.iloc[:1])[0][0]["label"]
    assert shown["artist_name"] == songs["artist_name"][0]
    # The pictures: a bar of songs per predicted genre, and the confusion matrix against `music_genre`.
    predicted = [genres[0]["label"] for genres in local_pipeline(songs)]
    chart = page.locator(".vega-embed").first
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
