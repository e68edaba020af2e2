"""The web app's defences, each against the real thing: cross-site requests through the app,
/docs without the network, slow clients against a real uvicorn server on a loopback port (the
app's own protocol and limits), and the time estimate from measured rates."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import music_like
from fastapi.testclient import TestClient
from test_web_api import (  # noqa: F401  (one_thread: autouse fixture)
    error_of,
    one_thread,
    post_job,
    wait_done,
    wav_bytes,
    write_tiny_models,
)

from genreshift.web import jobs as wjobs
from genreshift.web.app import BodyLimits, create_app
from genreshift.web.server import ServerLimits, server_config


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("hardening-models"))


@pytest.fixture(scope="module")
def app(models: Path, tmp_path_factory: pytest.TempPathFactory):
    app = create_app(models, workdir=tmp_path_factory.mktemp("hardening-jobs"),
                     trusted_origins=("https://music.example.org",))
    yield app
    app.state.manager.close()


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)  # no lifespan: nothing here converts


# --------------------------------------------------------------------------- cross-site


def test_cross_site_requests_are_refused(client: TestClient) -> None:
    song = wav_bytes(music_like(1.0))
    before = set(client.app.state.manager.root.iterdir())
    for headers in ({"origin": "http://evil.example"},
                    {"origin": "null"},  # a sandboxed frame or a file:// page
                    {"origin": "http://testserver:8080"},  # another port is another origin
                    {"referer": "http://evil.example/page.html"}):
        r = client.post("/api/jobs", headers=headers, data={"genre": "jazz"},
                        files={"file": ("a.wav", song)})
        assert "another site" in error_of(r, 403), headers
    assert "another site" in error_of(client.delete(f"/api/jobs/{'A' * 32}",
                                                    headers={"origin": "http://evil.example"}),
                                      403)
    assert set(client.app.state.manager.root.iterdir()) == before  # nothing was saved
    # reading is not refused: a cross-site page cannot read the answer anyway (no CORS)
    assert client.get("/api/info", headers={"origin": "http://evil.example"}).status_code == 200


def test_own_page_trusted_origins_and_api_clients_are_served(client: TestClient) -> None:
    song = wav_bytes(music_like(1.0))
    for headers in ({"origin": "http://testserver"},  # the server's own page
                    {"origin": "http://TESTSERVER:80"},  # the same origin, spelled out
                    {"referer": "http://testserver/"},
                    {"origin": "https://music.example.org"},  # trusted_origins
                    {}):  # curl, scripts: no Origin at all
        r = client.post("/api/jobs", headers=headers, data={"genre": "jazz"},
                        files={"file": ("a.wav", song)})
        assert r.status_code == 202, (headers, r.text)
        assert client.delete(r.json()["links"]["status"], headers=headers).status_code == 200


# --------------------------------------------------------------------------- /docs offline


def test_docs_reference_no_outside_host(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert not re.findall(r"(?:https?:)?//[\w.-]+\.\w", r.text), re.findall(
            r"(?:https?:)?//[\w.-]+\.\w[^\"' ]*", r.text)
        assert "connect-src 'self'" in r.headers["content-security-policy"]
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
        assert assets and all(a.startswith("/") for a in assets), assets
        for a in assets:  # each one is served here
            assert client.get(a).status_code == 200, a
    assert '"validatorUrl": null' in client.get("/docs").text  # no badge linking out
    assert client.get("/openapi.json").json()["info"]["title"] == "genreshift"


# --------------------------------------------------------------------------- time estimate


def test_estimate_from_measured_rates(models: Path, tmp_path: Path) -> None:
    app = create_app(models, workdir=tmp_path)
    manager = app.state.manager
    with TestClient(app) as client:
        song = wav_bytes(music_like(2.0))
        first = post_job(client, song, genre="jazz").json()
        start = wjobs.START_RATES["trained"]
        # before anything has finished: the measured starting rate
        assert first["estimate_s"] == round(start * 2.0, 1)
        s = wait_done(client, first["id"])
        assert s["state"] == "done" and s["estimate_s"] is None
        # the first job measured here replaces the starting rate (measured elsewhere)
        first_rate = s["elapsed_s"] / 2.0
        assert manager.rate("trained") == pytest.approx(first_rate, abs=0.01)
        second = post_job(client, song, genre="jazz").json()
        assert second["estimate_s"] == pytest.approx(first_rate * 2.0, abs=0.06)
        assert manager.rate("reference") == wjobs.START_RATES["reference"]  # per mode
        s = wait_done(client, second["id"])
        # later ones move a running average
        assert manager.rate("trained") == pytest.approx(
            wjobs.next_rate(first_rate, s["elapsed_s"] / 2.0), abs=0.01)
        assert wjobs.next_rate(1.0, 2.0) == pytest.approx(1.0 + wjobs.RATE_WEIGHT)


# --------------------------------------------------------------------------- slow clients


@pytest.fixture(scope="module")
def live(models: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app under uvicorn with short limits, on a free loopback port."""
    import uvicorn

    limits = ServerLimits(header_timeout=1.0, keep_alive=1, limit_concurrency=4)
    slow_app = create_app(models, workdir=tmp_path_factory.mktemp("slow-jobs"),
                          body_limits=BodyLimits(idle_timeout=1.0, min_rate=16_000))
    server = uvicorn.Server(server_config(slow_app, host="127.0.0.1", port=0, limits=limits,
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield port
    server.should_exit = True
    thread.join(15)


def _closed_after(sock: socket.socket, limit: float = 10.0) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock``, and what it sent before."""
    sock.settimeout(limit)
    t = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return time.monotonic() - t, data


def test_slow_header_is_cut_off(live: int) -> None:
    with socket.create_connection(("127.0.0.1", live)) as partial, \
            socket.create_connection(("127.0.0.1", live)) as silent:
        partial.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sl")
        waited, data = _closed_after(partial)
        assert 0.8 <= waited < 3.0 and data == b"", (waited, data)
        # one that never sent a byte went too (uvicorn alone keeps it open for good)
        silent.settimeout(0.5)
        assert silent.recv(1) == b""
    # a client that sends its header at once is served as before
    with socket.create_connection(("127.0.0.1", live)) as ok:
        ok.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        _, data = _closed_after(ok)
        assert data.startswith(b"HTTP/1.1 200")


def test_slow_body_gets_408(live: int) -> None:
    head = (b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
    with socket.create_connection(("127.0.0.1", live)) as stalled:
        stalled.sendall(head + b"--x\r\n")
        waited, data = _closed_after(stalled)
        assert 0.8 <= waited < 4.0, waited
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
        # stalled: the idle timeout says it stopped; on a loaded machine the rate check (the
        # same 408 for the same body) can come first
        assert (b'"error":"the request body stopped sending' in data
                or b'"error":"the request body is too slow' in data), data[-200:]


def test_connection_limit(live: int) -> None:
    idle = [socket.create_connection(("127.0.0.1", live)) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", live)) as late:
            late.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            late.settimeout(5)
            assert late.recv(100).startswith(b"HTTP/1.1 503")  # at once, not after a wait
    finally:
        for s in idle:
            s.close()
