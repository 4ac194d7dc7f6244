"""Experiments use the integration fixtures (one broker per session, a namespace per test)."""

from tests.integration.conftest import env, settings, write_pipeline

__all__ = ["env", "settings", "write_pipeline"]
