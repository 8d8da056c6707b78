"""Prometheus metrics, computed when scraped from the read model the API renders.

Nothing is computed twice: what each item shows is read by :mod:`patrol.api.metric_items`
from the engine's read side; Patrol's own process figures come from the one ``/proc``
reader (:mod:`patrol.engine.procfs`). Nothing is computed between scrapes either: an
unscraped Patrol does no work for metrics, and does not even import ``prometheus_client``
(the HTTP transport imports this module at the first scrape).

Items are labelled ``group`` and ``id`` only; their ``name`` and keepalive are on
``patrol_item_info`` alone (join on ``group``/``id``), so a renamed app does not start a
new series of every metric. Secrets and key/values never appear (nothing here reads
them). The reference is docs/observability.md.

Two ways to the same text. :class:`ItemCollector` and :class:`PatrolCollector` are
``prometheus_client`` collectors (a registry of their own, fresh families per scrape).
``generate_latest`` spends about 5 us per sample, and 1,000 apps are ~22,000 samples:
110 ms. So the per-item families, most of a scrape, are written by
:mod:`patrol.api.metrics_text` from the same rows, in the same format (a test holds the
two byte for byte equal); the small Patrol-wide part goes through ``generate_latest``.
"""

from __future__ import annotations

import os
import resource
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from patrol import __version__
from patrol.api import metrics_text
from patrol.api.metric_items import INFO_HELP, ITEM_FAMILIES, SCRAPE_STEP, STATE_HELP, ItemRow, item_rows
from patrol.engine import procfs
from patrol.util.steps import Steps

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from patrol.api.counts import RequestCounts
    from patrol.api.stream import EventStream
    from patrol.engine.readside import Reader

#: the text format's media type (what ``generate_latest`` writes)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ItemCollector(Collector):
    """The per-item families of ``rows`` as ``prometheus_client`` builds them (the reference
    for :func:`patrol.api.metrics_text.items_text`, and for embedding in a registry)."""

    def __init__(self, rows: list[ItemRow]) -> None:
        self.rows = rows

    def collect(self) -> Iterator["Metric"]:
        labels = ["group", "id"]
        for family in ITEM_FAMILIES:
            cls = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = cls(family.name, family.help, labels=labels)
            for row in self.rows:
                value = family.value(row)
                if value is not None:
                    metric.add_metric([row.group, row.id], value)
            yield metric
        states = GaugeMetricFamily("patrol_item_state", STATE_HELP, labels=[*labels, "state"])
        info = InfoMetricFamily("patrol_item", INFO_HELP, labels=[*labels, "keepalive", "name"])
        for row in self.rows:
            for state in row.states:
                states.add_metric([row.group, row.id, state], 1 if state == row.state else 0)
            info.add_metric([row.group, row.id, row.keepalive, row.name], {})
        yield states
        yield info


class PatrolCollector(Collector):
    """Patrol-wide families: build, API requests, state file, plugins, event streams, and
    Patrol's own process (the ``process_*`` names every exporter uses)."""

    def __init__(self, reader: "Reader", requests: "RequestCounts", stream: "EventStream",
                 store_failures: Callable[[], int]) -> None:
        self.reader = reader
        self.requests = requests
        self.stream = stream
        self.store_failures = store_failures

    def collect(self) -> Iterator["Metric"]:
        yield InfoMetricFamily("patrol_build", "Patrol's version.", value={"version": __version__})
        api = CounterMetricFamily("patrol_api_requests", "API requests answered, by transport and HTTP status.",
                                  labels=["transport", "code"])
        for (transport, code), count in sorted(self.requests.counts.items()):
            api.add_metric([transport, str(code)], count)
        yield api
        yield CounterMetricFamily("patrol_state_file_errors", "Writes of the state file that failed.",
                                  value=self.store_failures())
        plugins = self.reader.plugins
        failures = CounterMetricFamily("patrol_plugin_failures",
                                       "Failures of a plugin: to load, or in a call Patrol isolated.",
                                       labels=["plugin"])
        for name in sorted({p.name for p in plugins.loaded} | set(plugins.failures)):
            failures.add_metric([name], plugins.failures.get(name, 0))
        yield failures
        yield GaugeMetricFamily("patrol_event_streams", "Clients following the event stream now.",
                                value=len(self.stream.subscribers))
        yield CounterMetricFamily("patrol_event_streams_dropped",
                                  "Event stream clients dropped for not reading fast enough.",
                                  value=self.stream.dropped)
        yield from process_families()


def process_families() -> Iterator["Metric"]:
    """Patrol's own process, as the standard ``process_*`` metrics."""
    me = procfs.stat(os.getpid())
    if me is not None:
        yield CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                                  value=me.cpu_ticks / procfs.CLK_TCK)
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.", value=me.rss)
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", value=me.vsize)
        yield GaugeMetricFamily("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.", value=me.started_at)
    fds = procfs.open_descriptors()
    if fds is not None:
        yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors.", value=fds)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        yield GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.", value=soft)


class Metrics:
    """One Patrol's metrics: a registry of its own (never the global one)."""

    def __init__(self, reader: "Reader", requests: "RequestCounts", stream: "EventStream",
                 store_failures: Callable[[], int] = lambda: 0) -> None:
        self.reader = reader
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PatrolCollector(reader, requests, stream, store_failures))

    async def scrape(self, steps: Steps | None = None) -> list[bytes]:
        """The whole exposition, in chunks: the items' rows are read in steps, their text
        written in steps, then the Patrol-wide part."""
        steps = steps or Steps(SCRAPE_STEP)
        rows = await item_rows(self.reader, steps)
        chunks = await metrics_text.items_text(rows, steps)
        chunks.append(generate_latest(self.registry))
        return chunks


def registry_for(rows: list[ItemRow], extra: Any = None) -> CollectorRegistry:
    """A registry of ``prometheus_client``'s own rendering of ``rows`` (tests compare it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ItemCollector(rows))
    if extra is not None:
        registry.register(extra)
    return registry
