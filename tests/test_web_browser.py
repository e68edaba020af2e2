"""The web page end to end in a real browser: Debian's Chromium, headless, driven by Playwright.

The real app runs under uvicorn on a free port (tiny untrained models, so it is quick); the
browser drops examples/example.flac on the page, picks a genre and a strength, converts, and
checks that the converted audio loads in its player, the spectrogram image is shown, the
downloads work and a bad file gets its message. A screenshot is saved under the test's tmp
folder (its path is printed). Skips, saying why, only where Chromium cannot be launched.
"""

from __future__ import annotations

import base64
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_web_api import write_tiny_models

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = ROOT / "examples" / "example.flac"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The app under uvicorn in a thread; yields its base URL."""
    import torch
    import uvicorn

    from genreshift.web.app import create_app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small clips; see test_web_api.one_thread
    models = write_tiny_models(tmp_path_factory.mktemp("browser-models"))
    app = create_app(models, workers=1, workdir=tmp_path_factory.mktemp("browser-jobs"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        except sync_api.Error as e:  # missing libraries, no sandbox, ...
            pytest.skip(f"Chromium at {CHROMIUM} cannot be launched: {e}")
        yield b
        b.close()


def _drop_file(page, selector: str, path: Path, mime: str) -> None:
    """Drag-and-drop as a user would: a drop event whose DataTransfer carries the file."""
    data = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([b64, name, type]) => {
             const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
             const transfer = new DataTransfer();
             transfer.items.add(new File([bytes], name, {type}));
             return transfer;
           }""", [data, path.name, mime])
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_convert_in_the_browser(server: str, browser, tmp_path: Path,
                                record_property) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server + "/")
        page.wait_for_selector("#genre option[value='rock']", state="attached")
        assert page.locator("#genre option").all_inner_texts() == ["jazz", "rock"]
        assert "up to 50 MB and 10 min." in page.inner_text("#limits")
        assert page.is_disabled("#convert")  # nothing chosen yet

        # the file picker, then drag-and-drop (the later choice wins)
        page.set_input_files("#file", str(EXAMPLE))
        assert page.inner_text("#file-name").startswith("example.flac")
        shutil.copy(EXAMPLE, tmp_path / "dropped.flac")
        _drop_file(page, "#drop", tmp_path / "dropped.flac", "audio/flac")
        assert page.inner_text("#file-name").startswith("dropped.flac")

        page.select_option("#genre", "rock")
        page.fill("#strength", "0.75")
        assert page.inner_text("#strength-value") == "0.75"
        page.click("#convert")
        page.wait_for_selector("#progress", state="visible", timeout=10_000)
        page.wait_for_selector("#result", state="visible", timeout=90_000)
        assert page.is_hidden("#error"), page.inner_text("#error")
        summary = page.inner_text("#summary")
        assert "dropped.flac" in summary and "rock" in summary and "0.75" in summary

        # the converted audio has a source the browser can play: its metadata loads
        page.wait_for_function("document.getElementById('converted').readyState >= 1",
                               timeout=15_000)
        audio = page.evaluate("""() => {
            const a = document.getElementById('converted');
            return {src: a.currentSrc, duration: a.duration, error: a.error && a.error.code,
                    canPlay: a.canPlayType('audio/wav')};
        }""")
        assert audio["src"].startswith(server + "/api/jobs/") and audio["src"].endswith("/wav")
        assert audio["error"] is None and audio["canPlay"] != ""
        assert abs(audio["duration"] - 12.0) < 0.1, audio
        page.wait_for_function("document.getElementById('original').readyState >= 1",
                               timeout=15_000)

        # the spectrogram comparison image is loaded and on screen
        page.wait_for_function("""() => {
            const img = document.getElementById('spectrogram');
            return img.complete && img.naturalWidth > 0;
        }""", timeout=15_000)
        assert page.is_visible("#spectrogram")
        assert page.evaluate("document.getElementById('spectrogram').naturalWidth") > 500

        for fmt, media in (("flac", "audio/flac"), ("mp3", "audio/mpeg")):
            href = page.get_attribute(f"#dl-{fmt}", "href")
            r = page.request.get(server + href)
            assert r.ok and r.headers["content-type"] == media
            assert f'filename="dropped.rock.{fmt}"' in r.headers["content-disposition"]

        shot = tmp_path / "web_e2e.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot of the converted page: {shot}")
        record_property("screenshot", str(shot))  # in --junitxml reports

        # a file that is not audio: the server's message is shown, no result
        page.set_input_files("#file", files=[{"name": "notes.wav", "mimeType": "audio/wav",
                                              "buffer": b"these are notes, not audio\n" * 9}])
        page.click("#convert")
        page.wait_for_selector("#error", state="visible", timeout=15_000)
        assert "not audio" in page.inner_text("#error")
        assert page.is_hidden("#result")
        # the browser reports each failed request as a console error: that one is expected
        problems = [p for p in problems if "415" not in p]
        assert problems == [], problems
    finally:
        page.close()


def test_docs_work_offline(server: str, browser) -> None:
    """/docs renders in a browser that can reach nothing but this server (every other request
    is aborted and recorded), and its page links to no other host."""
    page = browser.new_page()
    outside: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith(server):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "genreshift API" in page.title()
        assert "genreshift" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/jobs']", timeout=15_000)
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        assert all(link.startswith(server) for link in links if link.startswith("http")), links
        assert outside == [] and problems == [], (outside, problems)
    finally:
        page.close()
