"""The studio in a real browser: ``python serve.py`` on a tiny trained melody model, driven by
Playwright in Debian's Chromium (``make install`` installs it; without it these tests skip).

``STUDIO_SCREENSHOT=docs/studio.png python -m pytest tests/test_studio_browser.py`` also saves a
screenshot of the Infill tab for the README.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ddpm.music.events import read_midi, write_midi
from tests.test_studio import melody_events

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (make install runs apt-get install chromium)"
    return None


pytestmark = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


@pytest.fixture(scope="module")
def server(melody_run, tmp_path_factory):
    """``python serve.py`` on the tiny model, any free port; yields the URL it prints."""
    _, run = melody_run
    out = tmp_path_factory.mktemp("studio_files")
    cmd = [sys.executable, "serve.py", f"ckpt={run / 'last.ckpt'}", "port=0", f"out_dir={out}", "max_upload_kb=64"]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen = []
    try:
        while True:
            line = lines.get(timeout=180)
            seen.append(line)
            found = re.search(r"running at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                break
        yield found.group(1)
    except queue.Empty:
        pytest.fail(f"serve.py printed no URL: {''.join(seen)}")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the studio, loaded, with its console errors collected in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, base_url=server)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    yield page
    context.close()


def fetch_events(page, url: str, path: Path) -> np.ndarray:
    response = page.request.get(url)
    assert response.ok and response.body()[:4] == b"MThd"
    path.write_bytes(response.body())
    return read_midi(path)[0]


def test_page_loads_without_console_errors(page):
    assert "8 bars" in page.inner_text("#model-info")
    assert page.is_visible("#panel-generate") and not page.is_visible("#panel-infill")
    assert page.errors == []


def test_generate_shows_playable_piano_rolls_and_midi_downloads(page, tmp_path):
    page.fill("#generate-form input[name=n]", "3")
    page.select_option("#generate-form select[name=sampler]", "ddim")
    page.fill("#generate-form input[name=steps]", "5")
    page.evaluate(  # record what the progress bar shows while the request runs
        """() => { window.shown = []; new MutationObserver(() => window.shown.push(
            [document.querySelector('#progress-box').hidden, document.querySelector('#progress-stage').textContent])
        ).observe(document.querySelector('#progress-box'), {attributes: true, subtree: true, childList: true}); }"""
    )
    page.click("#generate-form button[type=submit]")
    page.wait_for_selector("#generate-results figure.melody", timeout=60_000)
    assert page.locator("#generate-results .roll-box").count() == 3
    shown = page.evaluate("window.shown")
    assert any(not hidden and stage for hidden, stage in shown) and shown[-1][0]  # shown, then hidden
    assert page.locator("#generate-results .bar-numbers").first.inner_text().split() == [str(b) for b in range(1, 9)]
    page.wait_for_function(
        "[...document.querySelectorAll('#generate-results audio')].every(a => a.duration > 0)", timeout=20_000
    )
    durations = page.eval_on_selector_all("#generate-results audio", "els => els.map(a => a.duration)")
    assert len(durations) == 3 and all(abs(d - 17.0) < 0.1 for d in durations)  # 8 bars at 120 qpm + 1 s
    links = page.locator("#generate-results a.download")
    with page.expect_download() as download:
        links.first.click()
    assert download.value.suggested_filename.endswith(".mid")
    events, _ = read_midi(download.value.path())
    assert 0 < len(events) <= 128
    for i in range(1, 3):
        assert len(fetch_events(page, links.nth(i).get_attribute("href"), tmp_path / f"{i}.mid")) > 0
    assert page.errors == []


def test_infill_on_an_upload_keeps_the_other_bars(page, tmp_path):
    events = melody_events(4)
    write_midi(events, tmp_path / "tune.mid")
    page.click("#tab-infill")
    page.set_input_files("#panel-infill .upload", str(tmp_path / "tune.mid"))
    page.wait_for_selector("#infill-source .roll-box")
    box = page.locator("#infill-source svg.roll").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 2.5 / 8, y)  # from the middle of bar 3 ...
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 5.5 / 8, y, steps=4)  # ... to the middle of bar 6
    page.mouse.up()
    assert page.input_value("#infill-form input[name=first_bar]") == "3"
    assert page.input_value("#infill-form input[name=last_bar]") == "6"
    assert page.inner_text("#infill-snap") == "regenerates bars 3–6"
    page.fill("#infill-form input[name=temperature]", "1")
    page.click("#infill-form button[type=submit]")
    page.wait_for_selector("#infill-results figure.melody", timeout=60_000)
    cards = page.locator("#infill-results figure.melody")
    assert cards.count() == 3 and page.locator("#infill-results rect.new-bars").count() == 3
    variants = [
        fetch_events(page, cards.nth(i).locator("a.download").get_attribute("href"), tmp_path / f"v{i}.mid")
        for i in range(3)
    ]
    for v in variants:  # bars 1-2 and 7-8 as uploaded, note for note
        assert np.array_equal(v[:32], events[:32]) and np.array_equal(v[96:128], events[96:])
    assert any(not np.array_equal(v[32:96], events[32:96]) for v in variants)
    shot = os.environ.get("STUDIO_SCREENSHOT")
    if shot:
        page.mouse.move(0, 0)
        page.set_viewport_size({"width": 1280, "height": 400})  # the full page is then just its content
        page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "studio.png", shot)
    assert page.errors == []


def test_a_bad_upload_shows_an_error_and_the_next_request_works(page, tmp_path):
    (tmp_path / "notes.txt").write_text("not a MIDI file")
    page.click("#tab-infill")
    page.set_input_files("#panel-infill .upload", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#message:not([hidden])")
    assert "notes.txt: not a MIDI file" in page.inner_text("#message")
    write_midi(melody_events(2), tmp_path / "short.mid")
    page.set_input_files("#panel-infill .upload", str(tmp_path / "short.mid"))
    page.wait_for_selector("#infill-source .roll-box")
    assert page.is_hidden("#message") and "repeated" in page.inner_text("#infill-source figcaption")
    page.fill("#infill-form input[name=first_bar]", "8")
    page.fill("#infill-form input[name=last_bar]", "9")
    page.click("#infill-form button[type=submit]")
    page.wait_for_selector("#message:not([hidden])")
    assert "bars 8-9" in page.inner_text("#message")
    page.fill("#infill-form input[name=first_bar]", "7")
    page.fill("#infill-form input[name=last_bar]", "8")
    page.click("#infill-form button[type=submit]")
    page.wait_for_selector("#infill-results figure.melody", timeout=60_000)
    assert page.is_hidden("#message") and page.locator("#infill-results figure.melody").count() == 3


def test_an_upload_with_several_tracks_offers_them(page, tmp_path):
    from tests.test_studio import band_bytes

    (tmp_path / "band.mid").write_bytes(band_bytes(tmp_path))
    page.click("#tab-infill")
    page.set_input_files("#panel-infill .upload", str(tmp_path / "band.mid"))
    page.wait_for_selector("#panel-infill .tracks:not([hidden])")
    options = page.eval_on_selector_all("#panel-infill .track option", "els => els.map(o => o.textContent)")
    assert options == ["0: Tune (4 notes)", "1: Electric Bass (finger) (16 notes)"]
    assert page.input_value("#panel-infill .track") == "1"  # none has 5 pitches: the most notes
    assert "track 1 of 2" in page.inner_text("#infill-source figcaption")
    page.select_option("#panel-infill .track", "0")
    page.wait_for_function("document.querySelector('#infill-source figcaption').textContent.includes('track 0 of 2')")
    assert "(Tune)" in page.inner_text("#infill-source figcaption")
    write_midi(melody_events(2), tmp_path / "one.mid")  # one track: nothing to choose
    page.set_input_files("#panel-infill .upload", str(tmp_path / "one.mid"))
    page.wait_for_function("!document.querySelector('#infill-source figcaption').textContent.includes('track')")
    assert page.is_hidden("#panel-infill .tracks") and page.errors == []


def test_a_track_that_fails_still_offers_the_others_and_a_broken_file_hides_them(page, tmp_path):
    from tests.test_studio import song_bytes

    (tmp_path / "song.mid").write_bytes(song_bytes(tmp_path))
    page.click("#tab-infill")
    page.set_input_files("#panel-infill .upload", str(tmp_path / "song.mid"))
    page.wait_for_selector("#message:not([hidden])")
    assert "track 1 (Pad): 12 bars is too long" in page.inner_text("#message")
    assert page.is_visible("#panel-infill .tracks") and page.input_value("#panel-infill .track") == "1"
    page.select_option("#panel-infill .track", "0")
    page.wait_for_selector("#infill-source .roll-box")
    assert page.is_hidden("#message") and "track 0 of 3 (Tune)" in page.inner_text("#infill-source figcaption")
    (tmp_path / "notes.txt").write_text("not a MIDI file")
    page.set_input_files("#panel-infill .upload", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#message:not([hidden])")
    assert page.is_hidden("#panel-infill .tracks")
    assert [e for e in page.errors if "status of 400" not in e] == []  # the two refusals are the only ones
