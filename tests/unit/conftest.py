"""Fixtures shared by the unit tests of the pure layers."""

from __future__ import annotations

import os

import pytest

from dataflow.config import Settings

# Every environment variable the settings object reads (its aliases), upper-cased.
SETTINGS_VARIABLES = frozenset((field.alias or name).upper() for name, field in Settings.model_fields.items())


@pytest.fixture
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the caller's settings variables (any case) so defaults and each test's own values apply.

    Only the variables :class:`dataflow.config.Settings` reads are removed: others, such as the
    integration tests' ``DATAFLOW_TEST_BOOTSTRAP``, stay untouched.
    """
    for name in list(os.environ):
        if name.upper() in SETTINGS_VARIABLES:
            monkeypatch.delenv(name)
