"""The web app's JSON API (genreshift.web), through FastAPI's TestClient.

The app runs for real: uploads are decoded, conversions run in its worker threads with the
library, results are encoded and expire. The models are tiny untrained converters written
here (as in test_convert.py): they change the mel, which is all these tests need.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, music_like
from fastapi.testclient import TestClient

from genreshift import checkpoint as ckpt
from genreshift.checkpoint import Domain
from genreshift.models.classifier import GenreClassifier
from genreshift.models.config import ClassifierConfig, GeneratorConfig
from genreshift.models.generator import Generator
from genreshift.spectral import MelConfig
from genreshift.web.app import create_app

GENRES = ("classical", "jazz", "rock")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_tiny_models(folder: Path) -> Path:
    """Two untrained rest-to-genre converters and a classifier: a model folder in seconds."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg = GeneratorConfig(channels=4, n_res=1, core_channels=16, residual=False)
    for seed, target in enumerate(("jazz", "rock"), start=1):
        torch.manual_seed(seed)
        rest = tuple(g for g in GENRES if g != target)
        ckpt.save_converter(folder / f"rest-to-{target}.pt", g_ab=Generator(cfg),
                            g_ba=Generator(cfg), config=cfg, mel_config=MelConfig(),
                            a=Domain("rest", rest), b=Domain(target, (target,)),
                            provenance=ckpt.provenance("test", steps=7))
    torch.manual_seed(3)
    # three blocks: reference mode reads its style from three (StyleConfig.blocks)
    ccfg = ClassifierConfig(n_classes=len(GENRES), channels=4, n_blocks=3, frames=32)
    ckpt.save_classifier(folder / "classifier.pt", model=GenreClassifier(ccfg).eval(),
                         config=ccfg, mel_config=MelConfig(), genres=list(GENRES),
                         provenance=ckpt.provenance("test", steps=1))
    return folder


def wav_bytes(audio: np.ndarray, sr: int = 22_050, fmt: str = "WAV",
              subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wait_done(client: TestClient, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        s = r.json()
        if s["state"] in ("done", "failed"):
            return s
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {s}")


def post_job(client: TestClient, data: bytes, name: str = "song.wav", **form):
    return client.post("/api/jobs", files={"file": (name, data, "application/octet-stream")},
                       data={k: str(v) for k, v in form.items()})


def error_of(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"], body
    assert "Traceback" not in body["error"]
    return body["error"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The app's workers run torch in threads of their own; on a CPU shared with other jobs
    OpenMP threads spin-waiting on each other were measured up to 25x slower (see
    test_chunking.py), and these clips are small."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("web-models"))


@pytest.fixture(scope="module")
def song() -> bytes:
    stereo = np.stack([music_like(3.0, 44_100, seed=1), music_like(3.0, 44_100, seed=2)], 1)
    return wav_bytes(stereo, 44_100, subtype="PCM_24")


@pytest.fixture(scope="module")
def client(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory):
    app = create_app(tiny_models, workers=2, workdir=tmp_path_factory.mktemp("web-jobs"))
    with TestClient(app) as c:
        yield c


# --------------------------------------------------------------------------- the page, info


def test_page_info_and_openapi(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for element in ('id="drop"', 'id="genre"', 'id="strength"', 'id="converted"',
                    'id="spectrogram"', "/static/app.js"):
        assert element in r.text
    assert "XMLHttpRequest" in client.get("/static/app.js").text
    info = client.get("/api/info").json()
    assert info["genres"] == ["jazz", "rock"]
    assert info["source_detection"] == list(GENRES)
    assert info["limits"]["max_upload_bytes"] == 50_000_000
    assert info["limits"]["max_seconds"] == 600 and info["limits"]["workers"] == 2
    assert info["download_formats"] == ["wav", "flac", "mp3"]
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/api/info", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/original",
            "/api/jobs/{job_id}/result/{fmt}", "/api/jobs/{job_id}/spectrogram.png"} <= set(paths)
    assert set(paths["/api/jobs/{job_id}"]) == {"get", "delete"}
    post = paths["/api/jobs"]["post"]
    assert {"202", "413", "415", "422", "503"} <= set(post["responses"])
    ref = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert {"file", "genre", "reference", "strength", "source"} <= set(body["properties"])
    assert body["required"] == ["file"]


# --------------------------------------------------------------------------- conversions


def test_convert_and_download_every_format(client: TestClient, song: bytes) -> None:
    r = post_job(client, song, name="..\\..\\evil\\My Song!.wav", genre="jazz", strength=0.8,
                 rhythm="replace")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["settings"]["rhythm"] == "replace"
    assert job["state"] in ("queued", "running") and len(job["id"]) == 32
    assert job["input"] == {"name": "My Song_.wav", "format": "WAV", "encoding": "PCM_24",
                            "sample_rate": 44_100, "channels": 2, "duration_s": 3.0}
    s = wait_done(client, job["id"])
    assert s["state"] == "done", s["error"]
    res = s["result"]
    assert res["mode"] == "trained" and res["source_guess"] in GENRES
    assert [t["genre"] for t in res["targets"]] == ["jazz"]
    assert res["targets"][0]["model"] == "rest-to-jazz.pt"  # a name, never a server path
    assert res["strength"] == 0.8 and s["expires_in_s"] > 3000
    assert res["rhythm"]["asked"] == "replace"  # applied, or kept with the reason said
    assert str(client.app.state.manager.root) not in str(s)  # no server paths anywhere
    assert "input.wav" not in str(s) and "evil" not in str(s)

    # the original is the upload itself, byte for byte
    r = client.get(s["links"]["original"])
    assert r.status_code == 200 and r.content == song and r.headers["content-type"] == "audio/wav"
    original = sf.read(io.BytesIO(song))[0]
    # the upload is 24-bit: the result keeps it (the FLAC export, encoded from the WAV by
    # web/jobs.py's export, is still written at the default 16 bits)
    for fmt, subtype in (("wav", "PCM_24"), ("flac", "PCM_24"), ("mp3", "MPEG_LAYER_III")):
        r = client.get(s["links"]["downloads"][fmt])
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == f'attachment; filename="My_Song.jazz.{fmt}"'
        assert r.headers["cache-control"] == "no-store"
        info = sf.info(io.BytesIO(r.content))
        assert (info.samplerate, info.channels, info.subtype) == (44_100, 2, subtype)
        assert abs(info.duration - 3.0) < 0.06, (fmt, info.duration)
        if fmt != "mp3":
            converted = sf.read(io.BytesIO(r.content))[0]
            assert np.abs(converted - original).mean() > 1e-3  # it really changed the song
    r = client.get(s["links"]["spectrogram"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(PNG_MAGIC) and len(r.content) > 10_000

    # the job's folder holds only names the server made
    folder = client.app.state.manager.root / s["id"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "input.wav", "result.flac", "result.mp3", "result.wav", "spectrogram.png"]


def test_reference_mode(client: TestClient) -> None:
    ref = music_like(2.0, 22_050, seed=5) + 0.05 * np.random.default_rng(0).standard_normal(44_100)
    r = client.post("/api/jobs", data={"strength": "1"}, files={
        # an MP3 named .wav and a FLAC with no extension: the content decides
        "file": ("tune.wav", wav_bytes(music_like(2.0, seed=3), fmt="MP3"), "audio/wav"),
        "reference": ("style", wav_bytes(ref.astype(np.float32), fmt="FLAC"), "audio/x"),
    })
    assert r.status_code == 202, r.text
    assert r.json()["input"]["format"] == "MP3"
    s = wait_done(client, r.json()["id"])
    assert s["state"] == "done", s["error"]
    assert s["settings"] == {"mode": "reference", "genre": None, "source": None,
                             "strength": 1.0, "rhythm": "keep", "reference": "style"}
    assert s["result"]["mode"] == "reference"
    assert s["result"]["style_loss_final"] < s["result"]["style_loss_initial"]
    r = client.get(s["links"]["downloads"]["flac"])
    assert r.headers["content-disposition"].endswith('filename="tune.like-style.flac"')
    assert client.get(s["links"]["spectrogram"]).content.startswith(PNG_MAGIC)
    assert client.get(s["links"]["original"]).headers["content-type"] == "audio/mpeg"


def test_two_concurrent_jobs_are_separate(client: TestClient) -> None:
    a, b = wav_bytes(music_like(2.5, seed=11)), wav_bytes(music_like(2.5, seed=12))
    ja = post_job(client, a, name="alpha.wav", genre="jazz").json()
    jb = post_job(client, b, name="beta.txt", genre="rock", strength=0.5).json()  # any name
    assert ja["id"] != jb["id"]
    sa, sb = wait_done(client, ja["id"]), wait_done(client, jb["id"])
    assert sa["state"] == sb["state"] == "done", (sa["error"], sb["error"])
    assert "beta" not in str(sa) and "alpha" not in str(sb)
    assert sa["result"]["targets"][0]["genre"] == "jazz"
    assert sb["result"]["targets"][0]["genre"] == "rock" and sb["result"]["strength"] == 0.5
    assert client.get(sa["links"]["original"]).content == a
    assert client.get(sb["links"]["original"]).content == b
    out_a = sf.read(io.BytesIO(client.get(sa["links"]["downloads"]["wav"]).content))[0]
    out_b = sf.read(io.BytesIO(client.get(sb["links"]["downloads"]["wav"]).content))[0]
    assert out_a.shape == out_b.shape and not np.allclose(out_a, out_b)
    # deleting one leaves the other
    assert client.delete(f"/api/jobs/{ja['id']}").json() == {"id": ja["id"], "deleted": True}
    assert "was deleted" in error_of(client.get(f"/api/jobs/{ja['id']}"), 410)
    assert error_of(client.get(sa["links"]["downloads"]["wav"]), 410)
    assert not (client.app.state.manager.root / ja["id"]).exists()
    assert client.get(sb["links"]["downloads"]["wav"]).status_code == 200


# --------------------------------------------------------------------------- bad input


def test_bad_files(client: TestClient, tmp_path: Path) -> None:
    sr = 22_050
    nan = music_like(1.0)
    nan[100] = np.nan
    png = PNG_MAGIC + b"\x00\x00\x00\rIHDR" + bytes(64)
    # a FLAC whose header does not state its length (libsndfile cannot size its decode)
    endless = bytearray(wav_bytes(music_like(1.0), fmt="FLAC"))
    total = int.from_bytes(endless[18:26], "big")  # STREAMINFO: rate, channels, bits, samples
    endless[18:26] = (total & ~((1 << 36) - 1)).to_bytes(8, "big")
    cases = [
        (b"just some text, certainly not audio\n" * 20, "notes.wav", 415, "not audio"),
        (png, "song.mp3", 415, "not audio"),
        (b"", "empty.wav", 400, "empty"),
        (wav_bytes(np.zeros(2 * sr, np.float32)), "quiet.wav", 400, "silent"),
        (wav_bytes(music_like(0.2)), "short.wav", 400, "too short"),
        (wav_bytes(nan, subtype="FLOAT"), "nan.wav", 400, "NaN"),
        (wav_bytes(music_like(1.0))[:60], "cut.wav", 400, "'cut.wav'"),
        (bytes(endless), "endless.flac", 400, "does not say how long it is"),
    ]
    before = set(client.app.state.manager.root.iterdir())
    for data, name, status, phrase in cases:
        message = error_of(post_job(client, data, name=name, genre="jazz"), status)
        assert phrase in message, (name, message)
        assert str(client.app.state.manager.root) not in message  # no server paths
    # a refused upload leaves nothing behind
    assert set(client.app.state.manager.root.iterdir()) == before


def test_bad_parameters(client: TestClient, song: bytes) -> None:
    cases = [
        ({"genre": "polka"}, "unknown target genre 'polka'; available: jazz, rock"),
        ({"genre": "jazz:x"}, "not a number"),
        ({"genre": "jazz", "strength": "1.5"}, "choose a value from 0"),
        ({"genre": "jazz", "strength": "loud"}, "'strength'"),
        ({"genre": "jazz", "source": "polka"}, "source 'polka'"),
        ({"genre": "jazz", "rhythm": "swing"}, "'rhythm'"),
        ({}, "not neither"),
    ]
    for form, phrase in cases:
        assert phrase in error_of(post_job(client, song, **form), 422), form
    r = client.post("/api/jobs", data={"genre": "jazz"},
                    files={"file": ("a.wav", song), "reference": ("b.wav", song)})
    assert "not both" in error_of(r, 422)
    assert "'file' is missing" in error_of(client.post("/api/jobs", data={"genre": "jazz"}), 422)
    assert "no job" in error_of(client.get("/api/jobs/" + "A" * 32), 404)
    assert "no job" in error_of(client.get("/api/jobs/not-a-job-id"), 404)
    assert error_of(client.get("/api/jobs/..%2F..%2Fetc%2Fpasswd/original"), 404)
    assert "'fmt'" in error_of(client.get(f"/api/jobs/{'A' * 32}/result/ogg"), 422)
    assert "not allowed" in error_of(client.put("/api/jobs"), 405)
    assert error_of(client.get("/api/nothing"), 404)


def test_status_comes_from_the_error_kind(client: TestClient, song: bytes, monkeypatch
                                          ) -> None:
    from genreshift.errors import AudioError, GenreshiftError
    from genreshift.web import app as webapp

    # the same words, three kinds, three statuses
    text = "{p}: ffmpeg cannot decode it (invalid data); is it really audio?"
    for kind, status in (("unsupported_format", 415), ("bad_input", 400), ("too_large", 413)):
        def load(path, kind=kind, **_):
            raise AudioError(text.format(p=path), kind=kind)
        monkeypatch.setattr(webapp, "load_song", load)
        message = error_of(post_job(client, song, name="tune.wav", genre="jazz"), status)
        assert message.startswith("'tune.wav': ")  # the user's name, not the server's path
        assert str(client.app.state.manager.root) not in message
    monkeypatch.undo()

    # a setting's error names the form field, from the error's parts, not its wording
    def parse(text):
        raise GenreshiftError("'x' is not a number; write genre:weight, e.g. jazz:0.6",
                              kind="bad_option", option="to", value=text)
    monkeypatch.setattr(webapp.tconv, "parse_targets", parse)
    assert error_of(post_job(client, song, genre="jazz:x"), 422) == (
        "genre 'jazz:x': 'x' is not a number; write genre:weight, e.g. jazz:0.6")

    # the server's own fault: 500, and nothing of the server's files in the answer
    def broken(genre):
        raise GenreshiftError(f"{client.app.state.manager.root}/models: no space left",
                              kind="output")
    monkeypatch.setattr(webapp.tconv, "parse_targets", broken)
    message = error_of(post_job(client, song, genre="jazz"), 500)
    assert "could not write" in message and "/" not in message


def test_size_and_duration_limits(tiny_models: Path, tmp_path: Path) -> None:
    app = create_app(tiny_models, max_upload_mb=0.2, max_seconds=2.0, workdir=tmp_path)
    client = TestClient(app)  # no conversions here: the workers need not start
    try:
        mono = music_like(3.0)
        # 265 kB: within the request's cap (two files), over the per-file limit
        assert error_of(post_job(client, wav_bytes(mono, subtype="PCM_32"), genre="jazz"),
                        413).startswith("'song.wav' is larger than the 0.2 MB limit")
        # 1.3 MB: refused from its Content-Length before the body is read
        noise = np.random.default_rng(0).standard_normal(30 * 22_050).astype(np.float32)
        big = wav_bytes(0.1 * noise, subtype="PCM_16")
        too_big = "the upload is larger than the 0.2 MB limit per file"
        assert error_of(post_job(client, big, genre="jazz"), 413).startswith(too_big)
        # no Content-Length (chunked): counted as it streams in
        boundary = "genreshift-test-boundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"genre\"\r\n\r\njazz\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"big.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def chunks():
            yield head
            for i in range(0, len(big), 65_536):
                yield big[i:i + 65_536]
            yield tail

        r = client.post("/api/jobs", content=chunks(),
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert error_of(r, 413).startswith(too_big)
        # small enough, but too long
        msg = error_of(post_job(client, wav_bytes(music_like(3.0, 8_000), 8_000), genre="jazz"),
                       413)
        assert msg == "'song.wav' is 3 s long; the longest accepted is 2 s: cut it shorter"
        mp3 = wav_bytes(music_like(2.5, 8_000), 8_000, fmt="MP3")  # counted, not estimated
        assert error_of(post_job(client, mp3, "a.mp3", genre="jazz"), 413) == (
            "'a.mp3' is longer than the 2 s accepted: cut it shorter")
        assert list(app.state.manager.root.iterdir()) == []
    finally:
        app.state.manager.close()


@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                    reason="M4A uploads need ffmpeg and ffprobe (apt-get install ffmpeg)")
def test_m4a_upload_through_ffmpeg(tiny_models: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    sf.write(src, music_like(2.0), 22_050)
    m4a = tmp_path / "song.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c:a", "aac", "-b:a", "96k",
                    str(m4a)], check=True, timeout=60)
    app = create_app(tiny_models, workdir=tmp_path / "work")
    client = TestClient(app)  # the upload's checks only: no worker needed
    try:
        job = post_job(client, m4a.read_bytes(), name="voice memo", genre="jazz").json()
        assert job["input"]["format"] == "M4A" and "aac" in job["input"]["encoding"]
        assert abs(job["input"]["duration_s"] - 2.0) < 0.1
        r = client.get(job["links"]["original"])  # a WAV the browser can play
        assert r.headers["content-type"] == "audio/wav"
        assert abs(sf.info(io.BytesIO(r.content)).duration - job["input"]["duration_s"]) < 1e-3
    finally:
        app.state.manager.close()


def test_queue_bound_and_unfinished_jobs(tiny_models: Path, song: bytes, tmp_path: Path
                                         ) -> None:
    # Without the app's lifespan no worker starts: the job stays queued, deterministically.
    app = create_app(tiny_models, max_queue=1, workdir=tmp_path)
    client = TestClient(app)
    try:
        job = post_job(client, song, genre="rock").json()
        assert job["state"] == "queued" and job["queue_position"] == 0
        assert "still queued" in error_of(client.get(f"/api/jobs/{job['id']}/result/wav"), 409)
        assert error_of(client.get(f"/api/jobs/{job['id']}/spectrogram.png"), 409)
        assert client.get(job["links"]["original"]).content == song  # playable at once
        r = post_job(client, song, genre="rock")
        assert "busy" in error_of(r, 503) and r.headers["retry-after"] == "30"
        assert len(list(app.state.manager.root.iterdir())) == 1  # the refused one left nothing
        assert client.delete(job["links"]["status"]).status_code == 200
        assert "was deleted" in error_of(client.get(job["links"]["status"]), 410)
        assert list(app.state.manager.root.iterdir()) == []
    finally:
        app.state.manager.close()
    assert not tmp_path.joinpath(app.state.manager.root.name).exists()


def test_results_expire(tiny_models: Path, tmp_path: Path) -> None:
    app = create_app(tiny_models, ttl_seconds=1.0, workdir=tmp_path)
    with TestClient(app) as client:
        s = wait_done(client, post_job(client, wav_bytes(music_like(1.5)), genre="jazz")
                      .json()["id"])
        assert s["state"] == "done" and 0 < s["expires_in_s"] <= 1.0
        folder = app.state.manager.root / s["id"]
        assert (folder / "result.wav").is_file()
        # the expiry thread deletes the files on its own, with no request to trigger it
        deadline = time.monotonic() + 10
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not folder.exists()
        assert "expired" in error_of(client.get(s["links"]["status"]), 410)
        assert "expired" in error_of(client.get(s["links"]["downloads"]["mp3"]), 410)


# --------------------------------------------------------------------------- genreshift serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(tiny_models: Path, tmp_path: Path) -> None:
    import httpx

    port = _free_port()
    workdir = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "genreshift", "serve", "--port", str(port), "--models",
         str(tiny_models), "--workdir", str(workdir), "--ttl-minutes", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        # ~6 s of CPU to import torch and the app; far longer when the cores are shared
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert r.json()["genres"] == ["jazz", "rock"]
        assert r.json()["limits"]["ttl_seconds"] == 300
        # bound to the loopback address only (the default host)
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)
                     if a[0] == socket.AF_INET} - {"127.0.0.1"}
        except socket.gaierror:
            addrs = set()
        for addr in addrs:
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://{addr}:{port}/api/info", timeout=2)
        assert len(list(workdir.iterdir())) == 1  # its private folder
        # a page whose DNS name was rebound to 127.0.0.1 is refused
        r = httpx.get(f"http://127.0.0.1:{port}/api/info", headers={"host": "evil.example"})
        assert r.status_code == 400 and "host name" in r.json()["error"]
        r = httpx.get(f"http://localhost:{port}/api/info", timeout=2)
        assert r.status_code == 200
        # a job id in a URL opens the job: the access log shows a digest instead
        job_id = "Vq3" + "x" * 29
        assert httpx.get(f"http://127.0.0.1:{port}/api/jobs/{job_id}/result/wav").status_code \
            == 404
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert f"serving on http://127.0.0.1:{port}/" in out
    assert "Traceback" not in out, out
    from genreshift.web.jobs import log_tag

    assert f'"GET /api/jobs/{log_tag(job_id)}/result/wav HTTP/1.1" 404' in out, out
    assert job_id not in out
    assert list(workdir.iterdir()) == []  # removed at shutdown


def test_serve_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from genreshift.cli import main

    assert main(["serve", "--models", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    with pytest.raises(SystemExit) as e:
        main(["serve", "--workers", "0"])
    assert e.value.code == 2 and "--workers must be greater than 0" in capsys.readouterr().err
