"""Health checks with the reference engine's JSON shape (spec §5.4), independent of any web server.

``/live``, ``/ready`` and ``/startup`` each run a list of checks; the body is
``{"status": "UP"|"DOWN", "checks": {name: {"isHealthy", "message", "details"}}, "overallHealthy"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CheckResult:
    healthy: bool
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


Check = Callable[[], CheckResult]


def evaluate(checks: Mapping[str, Check]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body). A check that raises counts as unhealthy with its error as message."""
    results: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            res = check()
        except Exception as exc:  # a broken check must not take the probe down
            res = CheckResult(False, f"check failed: {exc}")
        results[name] = {"isHealthy": res.healthy, "message": res.message, "details": dict(res.details)}
    healthy = all(r["isHealthy"] for r in results.values())
    body = {"status": "UP" if healthy else "DOWN", "checks": results, "overallHealthy": healthy}
    return (200 if healthy else 503), body
