"""Unit tests of the settings object: the reference's ``SELDON_*`` names and defaults (spec §5.2),
one-line errors naming the variable, and secrets kept out of ``repr``."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from dataflow.config import Settings, load_settings
from dataflow.errors import ConfigError, DataflowError
from dataflow.topics import TopicNamer


@pytest.fixture(autouse=True)
def _clean_env(clean_settings_env: None) -> None:
    """Settings come from the environment: start every test from none of ours (tests/unit/conftest.py)."""


def test_defaults_follow_the_reference() -> None:
    s = load_settings()
    assert s.bootstrap_servers == "localhost:9092"
    assert s.partitions == 1
    assert s.replication_factor == 1
    assert s.join_window_ms == 60_000
    assert s.namespace == "default"
    assert s.log_level_app == "INFO"
    assert s.log_level_kafka == "WARN"
    assert s.ctlops_threads == 8
    assert s.upstream_port == 9008
    assert s.consumer_prefix == ""
    assert s.security_protocol == "PLAINTEXT"
    assert s.state_clean is True
    assert s.max_message_size == 1_000_000_000
    assert s.topic_create_timeout_ms == 60_000
    assert s.topic_describe_timeout_ms == 1_000
    assert s.topic_describe_retry_attempts == 60
    assert s.topic_describe_retry_delay_ms == 1_000
    assert s.sasl_username == "seldon"
    assert s.sasl_mechanism == "PLAIN"
    assert s.sasl_password.get_secret_value() == ""
    assert s.topic_prefix == "seldon"
    assert s.replica_id  # hostname by default, never empty


@pytest.mark.parametrize(
    ("env", "value", "attribute", "expected"),
    [
        ("SELDON_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092", "bootstrap_servers", "k1:9092,k2:9092"),
        ("SELDON_KAFKA_PARTITIONS_DEFAULT", "12", "partitions", 12),
        ("SELDON_KAFKA_REPLICATION_FACTOR", "3", "replication_factor", 3),
        ("SELDON_KAFKA_JOIN_WINDOW_MILLIS", "1500", "join_window_ms", 1500),
        ("SELDON_POD_NAMESPACE", "seldon-mesh", "namespace", "seldon-mesh"),
        ("SELDON_DATAFLOW_REPLICA_ID", "engine-7", "replica_id", "engine-7"),
        ("SELDON_LOG_LEVEL_APP", "DEBUG", "log_level_app", "DEBUG"),
        ("SELDON_LOG_LEVEL_KAFKA", "ERROR", "log_level_kafka", "ERROR"),
        ("SELDON_PIPELINE_CTLOPS_THREADS", "2", "ctlops_threads", 2),
        ("SELDON_HEALTH_SERVER_PORT", "8080", "health_port", 8080),
        ("SELDON_UPSTREAM_HOST", "seldon-scheduler", "upstream_host", "seldon-scheduler"),
        ("SELDON_UPSTREAM_PORT", "9010", "upstream_port", 9010),
        ("SELDON_KAFKA_CONSUMER_PREFIX", "team", "consumer_prefix", "team"),
        ("SELDON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "security_protocol", "SASL_SSL"),
        ("SELDON_KAFKA_STATE_CLEAN", "false", "state_clean", False),
        ("SELDON_KAFKA_MAX_MESSAGE_SIZE_BYTES", "2048", "max_message_size", 2048),
        ("SELDON_TOPIC_CREATE_TIMEOUT_MILLIS", "5", "topic_create_timeout_ms", 5),
        ("SELDON_TOPIC_DESCRIBE_TIMEOUT_MILLIS", "6", "topic_describe_timeout_ms", 6),
        ("SELDON_TOPIC_DESCRIBE_RETRY_ATTEMPTS", "7", "topic_describe_retry_attempts", 7),
        ("SELDON_TOPIC_DESCRIBE_RETRY_DELAY_MILLIS", "0", "topic_describe_retry_delay_ms", 0),
        ("SELDON_KAFKA_SASL_USERNAME", "alice", "sasl_username", "alice"),
        ("SELDON_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "sasl_mechanism", "SCRAM-SHA-512"),
        ("SELDON_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256", "sasl_mechanism", "SCRAM-SHA-256"),
        ("SELDON_KAFKA_SASL_MECHANISM", "OAUTHBEARER", "sasl_mechanism", "OAUTHBEARER"),
        ("DATAFLOW_TOPIC_PREFIX", "other", "topic_prefix", "other"),
    ],
)
def test_environment_variable_names(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(env, value)
    assert getattr(load_settings(), attribute) == expected


def test_empty_namespace_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_POD_NAMESPACE", "")
    assert load_settings().namespace == "default"


def test_namer_uses_prefix_and_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_POD_NAMESPACE", "seldon-mesh")
    namer = load_settings().namer
    assert namer == TopicNamer(prefix="seldon", namespace="seldon-mesh")
    assert namer.errors == "seldon.seldon-mesh.errors.errors"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("SELDON_KAFKA_PARTITIONS_DEFAULT", "many"),
        ("SELDON_KAFKA_PARTITIONS_DEFAULT", "0"),
        ("SELDON_KAFKA_REPLICATION_FACTOR", "-1"),
        ("SELDON_KAFKA_JOIN_WINDOW_MILLIS", "1.5s"),
        ("SELDON_KAFKA_JOIN_WINDOW_MILLIS", "0"),
        ("SELDON_UPSTREAM_PORT", "70000"),
        ("SELDON_HEALTH_SERVER_PORT", "http"),
        ("SELDON_KAFKA_STATE_CLEAN", "perhaps"),
        ("SELDON_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),  # unsupported by the reference too
        ("SELDON_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("SELDON_PIPELINE_CTLOPS_THREADS", "0"),
    ],
)
def test_bad_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert isinstance(info.value, DataflowError)
    message = str(info.value)
    assert message.startswith(f"setting {env}: ")
    assert "\n" not in message


def test_several_bad_values_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_KAFKA_PARTITIONS_DEFAULT", "x")
    monkeypatch.setenv("SELDON_UPSTREAM_PORT", "y")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "SELDON_KAFKA_PARTITIONS_DEFAULT" in message
    assert "SELDON_UPSTREAM_PORT" in message


def test_bad_topic_prefix_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFLOW_TOPIC_PREFIX", "bad prefix")
    with pytest.raises(ConfigError, match="topic prefix"):
        _ = load_settings().namer


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_KAFKA_PARTITIONS_DEFAULT", "5")
    assert load_settings().partitions == 5
    assert load_settings(partitions=3).partitions == 3


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="join_window_ms"):
        load_settings(join_window_ms=0)


def test_unrelated_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # Helm sets variables the engine does not use (spec §5.2); they must not stop it
    monkeypatch.setenv("SELDON_CORES_COUNT", "4")
    monkeypatch.setenv("SELDON_KAFKA_TLS_CLIENT_SECRET", "")
    assert load_settings().partitions == 1


def test_secret_not_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    s = load_settings()
    assert s.sasl_password.get_secret_value() == "hunter2-very-secret"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "hunter2" not in repr(s.sasl_password)
    assert "hunter2" not in str(s.model_dump())


def test_secret_not_in_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("SELDON_KAFKA_SASL_MECHANISM", "hunter2-very-secret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "SELDON_KAFKA_SASL_MECHANISM" in message
    assert "hunter2" not in message


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError):
        s.partitions = 2  # type: ignore[misc]


def test_kafka_kwargs() -> None:
    plain = load_settings(bootstrap_servers="a:1,b:2").kafka_kwargs()
    assert plain == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}

    sasl = load_settings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="pw"
    ).kafka_kwargs()
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-512"
    assert sasl["sasl_plain_username"] == "u"
    assert sasl["sasl_plain_password"] == "pw"


@pytest.mark.parametrize(
    ("prefix", "namespace", "expected"),
    [("", "default", "default-seldon-dataflow"), ("team", "seldon-mesh", "team-seldon-mesh-seldon-dataflow")],
)
def test_group_id(monkeypatch: pytest.MonkeyPatch, prefix: str, namespace: str, expected: str) -> None:
    monkeypatch.setenv("SELDON_KAFKA_CONSUMER_PREFIX", prefix)
    monkeypatch.setenv("SELDON_POD_NAMESPACE", namespace)
    assert load_settings().group_id == expected


def test_settings_class_reads_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_KAFKA_JOIN_WINDOW_MILLIS", "42")
    assert Settings().join_window_ms == 42


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_tls_protocols_get_an_ssl_context(monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    # aiokafka raises "`ssl_context` is mandatory" for these protocols without one
    monkeypatch.setenv("SELDON_KAFKA_SECURITY_PROTOCOL", protocol)
    kwargs = load_settings().kafka_kwargs()
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False  # empty endpoint identification algorithm, as the reference


def test_tls_endpoint_identification_enables_hostname_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELDON_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("SELDON_KAFKA_TLS_ENDPOINT_IDENTIFICATION_ALGORITHM", "https")
    context = load_settings().kafka_kwargs()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True


def test_plaintext_has_no_ssl_context() -> None:
    assert "ssl_context" not in load_settings().kafka_kwargs()


def test_missing_broker_ca_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SELDON_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("SELDON_KAFKA_TLS_BROKER_CA_PATH", str(tmp_path / "ca.crt"))
    with pytest.raises(ConfigError, match="SELDON_KAFKA_TLS_BROKER_CA_PATH"):
        load_settings().kafka_kwargs()


def test_bad_client_certificate_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate")
    monkeypatch.setenv("SELDON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SELDON_KAFKA_TLS_CLIENT_CERT_PATH", str(tmp_path / "tls.crt"))
    monkeypatch.setenv("SELDON_KAFKA_TLS_CLIENT_KEY_PATH", str(tmp_path / "tls.key"))
    with pytest.raises(ConfigError, match="SELDON_KAFKA_TLS_CLIENT_CERT_PATH"):
        load_settings().kafka_kwargs()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATAFLOW_SESSION_TIMEOUT_SECONDS", "inf"),
        ("DATAFLOW_SESSION_TIMEOUT_SECONDS", "0.01"),
        ("DATAFLOW_COMMIT_INTERVAL_SECONDS", "inf"),
        ("DATAFLOW_BROKER_GRACE_SECONDS", "nan"),
    ],
)
def test_timings_must_be_finite_and_sensible(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_an_unusable_data_dir_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dataflow.runtime.admin import check_data_dir

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DATAFLOW_DATA_DIR", str(blocker))
    with pytest.raises(ConfigError, match="DATAFLOW_DATA_DIR: cannot use"):
        check_data_dir(load_settings())
    monkeypatch.setenv("DATAFLOW_DATA_DIR", str(tmp_path / "state"))
    check_data_dir(load_settings())
