"""Settings: production refuses weak or default secrets and needs its public URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from habitue.settings import DEV_PUBLIC_URL, Settings, SettingsError, get_settings, secret_weakness

STRONG_HEX = "9f2c4b7a1e8d03f6c5a2b9e4d7f1083c6e5a2d9b4f7c1e08a3d6b9c2f5e8a1d4"
STRONG_B64 = "q3Xz-8Lk_2PvN7rT0mWc5YhJ9sGdE4aF1uBxKoRiVt6"
OTHER_HEX = "0123456789abcdef" * 2 + "f1e2d3c4b5a69788"
PUBLIC = "https://loyalty.example.com"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HABITUE_"):
            monkeypatch.delenv(name)


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "production",
        "hmac_key": STRONG_HEX,
        "admin_key": STRONG_B64,
        "session_secret": OTHER_HEX,
        "public_url": PUBLIC,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_strong_production_settings_are_accepted() -> None:
    s = production(public_url=PUBLIC + "/")
    assert s.base_url == PUBLIC  # no trailing slash
    assert production(admin_key=None).admin_key is None  # no admin key: nothing to check
    assert Settings(env="production", hmac_key=STRONG_HEX, public_url=PUBLIC).session_secret


@pytest.mark.parametrize("name", ["hmac_key", "admin_key", "session_secret"])
@pytest.mark.parametrize(
    "weak",
    [
        "x",
        "a",
        "a" * 64,  # long, one character
        "ab" * 32,  # long, two characters
        "0123456789abcdef0123",  # too short
        "habitue-development-only-hmac-key",  # the development default
        "0123456789abcdef" * 3,  # one block repeated
        "31415926535897932384626433832795",  # 32 digits: 106 bits
    ],
)
def test_production_refuses_weak_secrets(name: str, weak: str) -> None:
    with pytest.raises(ValidationError) as info:
        production(**{name: weak})
    message = str(info.value)
    assert f"HABITUE_{name.upper()}" in message


def test_production_needs_an_http_public_url() -> None:
    with pytest.raises(ValidationError, match="HABITUE_PUBLIC_URL must be set"):
        production(public_url=None)
    for bad in ("ftp://loyalty.example.com", "loyalty.example.com", "https://", "javascript:x"):
        with pytest.raises(ValidationError, match="http"):
            production(public_url=bad)
    with pytest.raises(ValidationError, match="no query"):
        production(public_url="https://loyalty.example.com/?next=x")


def test_development_and_tests_keep_their_defaults() -> None:
    for env in ("development", "test"):
        s = Settings(env=env, hmac_key="x", admin_key="a")  # type: ignore[arg-type]
        assert s.public_url == DEV_PUBLIC_URL
        assert s.signin_link_minutes == 15
    assert Settings(public_url="http://127.0.0.1:9000/").public_url == "http://127.0.0.1:9000"
    with pytest.raises(ValidationError):
        Settings(signin_link_minutes=0)


def test_secret_weakness_counts_bits_by_alphabet() -> None:
    assert secret_weakness(STRONG_HEX) is None
    assert secret_weakness(STRONG_B64) is None
    assert secret_weakness("0123456789abcdef" + "f1e2d3c4b5a69788") is None  # 32 hex: 128 bits
    assert secret_weakness("3141592653589793238462643383279502884197") is None  # 40 digits
    assert "bits" in (secret_weakness("31415926535897932384626433832795") or "")
    assert "repeats" in (secret_weakness("0123456789abcdef" * 2) or "")
    assert "different" in (secret_weakness("0123456" * 6) or "")


def test_the_refusal_never_shows_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HABITUE_ENV", "production")
    monkeypatch.setenv("HABITUE_HMAC_KEY", STRONG_HEX)
    monkeypatch.setenv("HABITUE_ADMIN_KEY", "weak-admin-key-value")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as info:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(info.value)
    assert "HABITUE_ADMIN_KEY" in message
    assert "weak-admin-key-value" not in message
    assert STRONG_HEX not in message


def test_the_cli_refuses_to_start_on_a_weak_key(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HABITUE_")},
        "HABITUE_ENV": "production",
        "HABITUE_HMAC_KEY": "x",
        "HABITUE_ADMIN_KEY": STRONG_B64,
        "HABITUE_PUBLIC_URL": PUBLIC,
        "HABITUE_DATABASE_URL": f"sqlite:///{tmp_path / 'weak.db'}",
    }
    run = subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / "habitue"), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "HABITUE_HMAC_KEY" in run.stderr
    assert STRONG_B64 not in run.stdout + run.stderr
    assert not (tmp_path / "weak.db").exists()
