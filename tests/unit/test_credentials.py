"""The worker's Faust consumer and producer use the configured TLS / SASL settings, not plain text."""

from __future__ import annotations

import ssl

import faust
import pytest

from dataflow.config import load_settings
from dataflow.plan import Router
from dataflow.runtime.app import create_app, faust_credentials


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str):  # type: ignore[no-untyped-def]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_plaintext_has_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    assert faust_credentials(settings_with(monkeypatch)) is None


def test_sasl_ssl_reaches_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(
        monkeypatch,
        SELDON_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        SELDON_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        SELDON_KAFKA_SASL_USERNAME="alice",
        SELDON_KAFKA_SASL_PASSWORD="s3cret",
    )
    app = create_app(settings, Router.build([]))
    creds = app.conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("alice", "s3cret", "SCRAM-SHA-512")
    assert creds.protocol.value == "SASL_SSL"
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_ssl_reaches_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = faust_credentials(settings_with(monkeypatch, SELDON_KAFKA_SECURITY_PROTOCOL="SSL"))
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.protocol.value == "SSL"
