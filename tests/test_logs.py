"""Secrets never reach the log: a failing request under `habitue serve`, its log grepped."""

from __future__ import annotations

import io
import logging
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import structlog
from sqlalchemy.engine import make_url

import habitue
from habitue import logs
from habitue.settings import Settings

# The server, with one service made to fail: its exception's message holds the secrets, and
# its frame a local variable that a traceback with locals would print.
RUNNER = textwrap.dedent(
    """
    import os, sys
    from habitue.programs import service

    async def program_created_at(session, program_id):
        local_marker = "local-variable-marker-" + "7f3a"
        leak = (os.environ["HABITUE_ADMIN_KEY"], os.environ["HABITUE_HMAC_KEY"],
                os.environ["HABITUE_SESSION_SECRET"], os.environ["HABITUE_DATABASE_URL"])
        raise RuntimeError(f"simulated failure {local_marker[:0]}holding {leak}")

    service.program_created_at = program_created_at
    from habitue.cli import app
    app(["serve", "--port", sys.argv[1]])
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_failing_request_logs_its_traceback_without_any_secret(
    db_url: str, db_kind: str, tmp_path: Path
) -> None:
    admin_key = "adm-" + secrets.token_urlsafe(24)
    hmac_key = "hmac-" + secrets.token_urlsafe(24)
    session_secret = "sess-" + secrets.token_urlsafe(24)
    url = db_url
    db_password = None
    if db_kind == "postgres":  # trust authentication ignores the password, the log must not
        db_password = "pw-" + secrets.token_hex(12)
        url = make_url(db_url).set(password=db_password).render_as_string(hide_password=False)
    src = str(Path(habitue.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "HABITUE_ENV": "development",
        "HABITUE_DATABASE_URL": url,
        "HABITUE_ADMIN_KEY": admin_key,
        "HABITUE_HMAC_KEY": hmac_key,
        "HABITUE_SESSION_SECRET": session_secret,
        "HABITUE_SCHEDULER": "false",
    }
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    log_path = tmp_path / "server.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, str(runner), str(port)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
            ) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)
                code = "log" + secrets.token_hex(4)
                r = client.post(
                    "/v1/programs",
                    json={"code": code, "name": "Logs", "currency": "EUR", "timezone": "UTC"},
                )
                assert r.status_code == 201, r.text
                r = client.get(
                    f"/v1/programs/{code}", headers={"Cookie": f"habitue_session={admin_key}"}
                )
                assert r.status_code == 500, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["type"].endswith("/internal")
        finally:
            server.terminate()
            server.wait(timeout=30)
    log = log_path.read_text(errors="replace")
    # The failure was logged, with its traceback...
    assert "unhandled error" in log, log
    assert "Traceback (most recent call last)" in log, log
    assert "RuntimeError: simulated failure holding" in log, log
    assert logs.REDACTED in log, log
    # ...and without the frames' variables or any secret.
    assert "local-variable-marker-7f3a" not in log, log
    for secret in (admin_key, hmac_key, session_secret, db_password):
        if secret is not None:
            assert secret not in log, (secret, log)


def test_redact_hides_headers_bearer_keys_and_url_passwords() -> None:
    logs.register_secrets(["hmac-known-secret-value"])
    text = (
        "[(b'host', b'x'), (b'authorization', b'Bearer abc.def-123'), (b'cookie', b's=1; t=2')] "
        "{'Authorization': 'Basic dXNlcjpwYXNz', 'cookie': 'sid=42'} "
        "Authorization: Bearer tok-999\n"
        "key hab_p1_AbCdEf0123456789xyz url postgresql://app:s3cr%40t@db:5432/x "
        "smtp://mailer:hunter22@mail.example:587 key=hmac-known-secret-value"
    )
    out = logs.redact(text)
    for leaked in (
        "abc.def-123", "s=1; t=2", "dXNlcjpwYXNz", "sid=42", "tok-999",
        "AbCdEf0123456789xyz", "s3cr%40t", "hunter22", "hmac-known-secret-value",
    ):  # fmt: skip
        assert leaked not in out, (leaked, out)
    assert "(b'host', b'x')" in out
    assert "postgresql://app:[redacted]@db:5432/x" in out


def test_secret_settings_are_found_by_name_and_in_url_passwords() -> None:
    settings = Settings(
        env="test",
        database_url="postgresql://app:db-password-1@db/x",
        admin_key="admin-key-value-1",
        hmac_key="hmac-key-value-1",
        session_secret="session-secret-value-1",
    )
    found = set(logs.secrets_of(settings))
    assert {
        "db-password-1", "admin-key-value-1", "hmac-key-value-1", "session-secret-value-1",
    } <= found  # fmt: skip
    assert "test" not in found


def test_structlog_and_stdlib_lines_are_redacted() -> None:
    settings = Settings(
        env="production",
        hmac_key="hmac-" + secrets.token_hex(24),
        admin_key="adm-" + secrets.token_hex(20),
        session_secret=secrets.token_urlsafe(32),
        public_url="https://loyalty.example",
    )
    stream = io.StringIO()
    logs.configure(settings)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))
    log = structlog.get_logger()
    try:
        local_secret = settings.admin_key
        raise ValueError(f"bad key {local_secret}")
    except ValueError:
        log.exception("failed", authorization=f"Bearer {settings.admin_key}", note=b"x")
    finally:
        logs.configure()
    line = stream.getvalue()
    assert '"event": "failed"' in line and "ValueError: bad key [redacted]" in line, line
    assert str(settings.admin_key) not in line and '"authorization": "[redacted]"' in line

    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("habitue.test.logs")
    logger.addHandler(handler)
    try:
        logs.configure(settings)  # puts the filter on every handler there is
        try:
            raise RuntimeError(settings.hmac_key)
        except RuntimeError:
            logger.error("with %s", (b"authorization", b"Bearer xyz-secret"), exc_info=True)
    finally:
        logger.removeHandler(handler)
    stream_value = handler.stream.getvalue()
    assert "Traceback" in stream_value and "RuntimeError: [redacted]" in stream_value
    assert settings.hmac_key not in stream_value and "xyz-secret" not in stream_value
