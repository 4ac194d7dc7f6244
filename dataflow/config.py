"""One frozen settings object, read from the ``SELDON_*`` environment variables of the reference engine.

Names and defaults follow the reference (spec §5.2) so a Seldon install configures us as it configures
it; the few settings of our own use the ``DATAFLOW_*`` prefix. Secrets never appear in ``repr``.
"""

from __future__ import annotations

import socket
import ssl
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dataflow.errors import ConfigError
from dataflow.topics import TopicNamer


def _default_replica_id() -> str:
    try:
        return socket.gethostname() or "seldon-dataflow-engine"
    except OSError:  # pragma: no cover - hostname lookup failing is rare
        return "seldon-dataflow-engine"


class Settings(BaseSettings):
    """Engine settings. Every field can be set by its ``SELDON_…`` (or ``DATAFLOW_…``) variable."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # --- reference keys (spec §5.2) ---
    log_level_app: str = Field("INFO", alias="SELDON_LOG_LEVEL_APP")
    log_level_kafka: str = Field("WARN", alias="SELDON_LOG_LEVEL_KAFKA")
    namespace: str = Field("default", alias="SELDON_POD_NAMESPACE")
    replica_id: str = Field(default_factory=_default_replica_id, alias="SELDON_DATAFLOW_REPLICA_ID")
    ctlops_threads: int = Field(8, alias="SELDON_PIPELINE_CTLOPS_THREADS", ge=1)
    health_port: int = Field(8000, alias="SELDON_HEALTH_SERVER_PORT", ge=0, le=65535)
    upstream_host: str = Field("", alias="SELDON_UPSTREAM_HOST")
    upstream_port: int = Field(9008, alias="SELDON_UPSTREAM_PORT", ge=1, le=65535)
    bootstrap_servers: str = Field("localhost:9092", alias="SELDON_KAFKA_BOOTSTRAP_SERVERS")
    consumer_prefix: str = Field("", alias="SELDON_KAFKA_CONSUMER_PREFIX")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        "PLAINTEXT", alias="SELDON_KAFKA_SECURITY_PROTOCOL"
    )
    partitions: int = Field(1, alias="SELDON_KAFKA_PARTITIONS_DEFAULT", ge=1)
    replication_factor: int = Field(1, alias="SELDON_KAFKA_REPLICATION_FACTOR", ge=1)
    state_clean: bool = Field(True, alias="SELDON_KAFKA_STATE_CLEAN")
    join_window_ms: int = Field(60_000, alias="SELDON_KAFKA_JOIN_WINDOW_MILLIS", ge=1)
    max_message_size: int = Field(1_000_000_000, alias="SELDON_KAFKA_MAX_MESSAGE_SIZE_BYTES", ge=1024)
    topic_create_timeout_ms: int = Field(60_000, alias="SELDON_TOPIC_CREATE_TIMEOUT_MILLIS", ge=1)
    topic_describe_timeout_ms: int = Field(1_000, alias="SELDON_TOPIC_DESCRIBE_TIMEOUT_MILLIS", ge=1)
    topic_describe_retry_attempts: int = Field(60, alias="SELDON_TOPIC_DESCRIBE_RETRY_ATTEMPTS", ge=1)
    topic_describe_retry_delay_ms: int = Field(1_000, alias="SELDON_TOPIC_DESCRIBE_RETRY_DELAY_MILLIS", ge=0)
    sasl_username: str = Field("seldon", alias="SELDON_KAFKA_SASL_USERNAME")
    sasl_password: SecretStr = Field(SecretStr(""), alias="SELDON_KAFKA_SASL_PASSWORD")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        "PLAIN", alias="SELDON_KAFKA_SASL_MECHANISM"
    )
    tls_broker_ca_path: str = Field("", alias="SELDON_KAFKA_TLS_BROKER_CA_PATH")
    tls_client_cert_path: str = Field("", alias="SELDON_KAFKA_TLS_CLIENT_CERT_PATH")
    tls_client_key_path: str = Field("", alias="SELDON_KAFKA_TLS_CLIENT_KEY_PATH")
    # empty disables hostname verification, as in the reference; "HTTPS" enables it
    tls_endpoint_identification: str = Field("", alias="SELDON_KAFKA_TLS_ENDPOINT_IDENTIFICATION_ALGORITHM")

    # --- ours ---
    topic_prefix: str = Field("seldon", alias="DATAFLOW_TOPIC_PREFIX")
    app_id: str = Field("seldon-dataflow", alias="DATAFLOW_APP_ID")
    pipelines_path: str = Field("", alias="DATAFLOW_PIPELINES")
    data_dir: str = Field(".state", alias="DATAFLOW_DATA_DIR")
    connect_timeout_s: float = Field(30.0, alias="DATAFLOW_CONNECT_TIMEOUT_SECONDS", gt=0, le=3600)
    commit_interval_s: float = Field(1.0, alias="DATAFLOW_COMMIT_INTERVAL_SECONDS", gt=0, le=600)
    # 6 s is the broker's default group.min.session.timeout.ms: the fastest failover Kafka allows
    # unless the broker is configured otherwise. Raise it with static membership (a pod restart
    # must fit in it) or when workers run on starved machines.
    session_timeout_s: float = Field(6.0, alias="DATAFLOW_SESSION_TIMEOUT_SECONDS", ge=1, le=1800)
    unsubscribe_after_s: float = Field(30.0, alias="DATAFLOW_UNSUBSCRIBE_AFTER_SECONDS", ge=0, le=86400)
    broker_grace_s: float = Field(60.0, alias="DATAFLOW_BROKER_GRACE_SECONDS", gt=0, le=86400)
    # how long a starting worker waits for Kafka (not ready, saying why) before it exits 1; 0: for ever
    startup_wait_s: float = Field(0.0, alias="DATAFLOW_STARTUP_WAIT_SECONDS", ge=0, le=7 * 86400)
    static_membership: bool = Field(False, alias="DATAFLOW_STATIC_MEMBERSHIP")

    @field_validator("namespace")
    @classmethod
    def _namespace_default(cls, value: str) -> str:
        return value or "default"

    @property
    def namer(self) -> TopicNamer:
        return TopicNamer(prefix=self.topic_prefix, namespace=self.namespace)

    def kafka_kwargs(self) -> dict[str, object]:
        """Connection arguments shared by every aiokafka client the project makes."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            # aiokafka refuses SSL and SASL_SSL without a context
            kwargs["ssl_context"] = self.ssl_context()
        if self.security_protocol == "SASL_SSL":
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context from the broker CA (system CAs when unset) and the optional client certificate."""
        try:
            context = ssl.create_default_context(cafile=self.tls_broker_ca_path or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"setting SELDON_KAFKA_TLS_BROKER_CA_PATH: cannot load CA: {exc}") from None
        context.check_hostname = self.tls_endpoint_identification.upper() == "HTTPS"
        if self.tls_client_cert_path or self.tls_client_key_path:
            try:
                context.load_cert_chain(self.tls_client_cert_path, self.tls_client_key_path or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    "settings SELDON_KAFKA_TLS_CLIENT_CERT_PATH / SELDON_KAFKA_TLS_CLIENT_KEY_PATH: "
                    f"cannot load the client certificate: {exc}"
                ) from None
        return context

    @property
    def group_id(self) -> str:
        """Consumer group of the worker fleet: ``[<consumer prefix>-][<namespace>-]<app id>``."""
        parts = [p for p in (self.consumer_prefix, self.namespace, self.app_id) if p]
        return "-".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (overrides win), turning validation errors into one line each."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            lines.append(f"setting {name}: {err['msg']}")
        raise ConfigError("; ".join(lines)) from None
