"""All Prometheus metrics of the engine, in one place: ``dataflow_`` prefix, seconds and bytes.

Labels are pipeline and step (never keys or request ids, which would explode cardinality).
A private registry keeps several engines in one test process from colliding.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records_in = Counter(
            "dataflow_records_consumed_total", "Records read from Kafka, by topic kind.", ["kind"], registry=r
        )
        self.step_records = Counter(
            "dataflow_step_records_total", "Records a step emitted.", ["pipeline", "step"], registry=r
        )
        self.step_dropped = Counter(
            "dataflow_step_dropped_total",
            "Records a step did not pass on, by reason (no-wanted-tensors is conditional routing at work).",
            ["pipeline", "step", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "dataflow_dead_letter_total",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.produce_errors = Counter(
            "dataflow_produce_errors_total",
            "Records Kafka refused to accept.",
            ["pipeline", "step"],
            registry=r,
        )
        self.error_replies = Counter(
            "dataflow_error_replies_total",
            "Error answers the engine wrote to a pipeline's outputs for a record it could not process.",
            ["pipeline"],
            registry=r,
        )
        self.batches = Counter(
            "dataflow_batches_total",
            "Batched requests a step sent to its model.",
            ["pipeline", "step"],
            registry=r,
        )
        self.revoke_commits = Counter(
            "dataflow_revoke_commits_total",
            "Partitions whose progress was committed as a rebalance took them away, so their next "
            "owner does not repeat it.",
            registry=r,
        )
        self.revoke_commit_failures = Counter(
            "dataflow_revoke_commit_failures_total",
            "Commits on revoke that failed; the next owner repeats records since the last commit.",
            registry=r,
        )
        self.offset_gaps = Counter(
            "dataflow_offset_gaps_total",
            "Times the consumer passed over records of a partition; each gap was read and processed.",
            registry=r,
        )
        self.offset_gap_records = Counter(
            "dataflow_offset_gap_records_total",
            "Records read back and processed because the consumer had passed them over.",
            registry=r,
        )
        self.replays_skipped = Counter(
            "dataflow_replays_skipped_total",
            "Records a rebalance delivered again that this worker had already processed.",
            registry=r,
        )
        self.step_seconds = Histogram(
            "dataflow_step_seconds",
            "Time spent converting one record for one step.",
            ["pipeline", "step"],
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1),
            registry=r,
        )
        self.bytes_out = Counter(
            "dataflow_produced_bytes_total", "Payload bytes produced.", ["pipeline", "step"], registry=r
        )
        self.pipelines = Gauge("dataflow_pipelines", "Pipelines this worker runs.", registry=r)
        self.assigned_partitions = Gauge(
            "dataflow_assigned_partitions", "Topic partitions assigned to this worker.", registry=r
        )
        self.state_entries = Gauge(
            "dataflow_state_entries", "Join, batch and loop-counter entries this worker keeps.", registry=r
        )
        self.tasks = Gauge("dataflow_asyncio_tasks", "asyncio tasks alive in the worker.", registry=r)
        self.subscribed_topics = Gauge(
            "dataflow_subscribed_topics", "Data topics this worker's consumer subscribes to.", registry=r
        )
        self.ready = Gauge("dataflow_ready", "1 when the worker is ready to process records.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
