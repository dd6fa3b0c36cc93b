"""GET /metrics read back with prometheus-client's own parser (the tests' view of a scrape)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[tuple[str, str], ...], float]


def scrape(server: Any) -> dict[str, Samples]:
    """Every sample of a server's /metrics: {sample name: {sorted labels: value}}."""
    r = server.request("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].replace(" ", "").startswith("text/plain;version=0.0.4")
    out: dict[str, Samples] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, **labels: str) -> float:
    """The sum of the samples carrying these labels (all of them with none)."""
    return sum(v for k, v in samples.items() if set(labels.items()) <= set(k))
