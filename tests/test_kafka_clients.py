"""Kafka client settings: every client gets the same security settings, bad settings are refused naming the
variable, broker failures are logged within seconds, and secrets are never shown."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from groups_consumer import kafka_clients
from groups_consumer.broker import _free_port
from groups_consumer.kafka_clients import KafkaClientSettings, KafkaSettingsError, as_environment, property_of
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer

PASSWORD = "pw-s3cr3t-value"
API_SECRET = "api-s3cr3t-value"
SCRAM = {"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "KAFKA_SASL_USERNAME": "groups", "KAFKA_SASL_PASSWORD": PASSWORD}
SECURITY_KEYS = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location")


def settings(**env):
    return KafkaClientSettings.from_env("broker:9093", env=env)


def test_named_variables_api_key_and_passthrough_become_properties(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a TLS connection")
    kafka = settings(**SCRAM, KAFKA_SSL_CA_LOCATION=str(ca), KAFKA_CLIENT_SOCKET_KEEPALIVE_ENABLE="true",
                     KAFKA_CONSUMER_SESSION_TIMEOUT_MS="45000", KAFKA_PRODUCER_LINGER_MS="5",
                     KAFKA_CLIENT_SOCKET_CONNECTION_SETUP_TIMEOUT_MS="3000")
    consumer, producer, admin = (kafka.config(role) for role in ("consumer", "producer", "admin"))
    assert consumer["security.protocol"] == "SASL_SSL" and consumer["sasl.mechanism"] == "SCRAM-SHA-512"
    assert consumer["ssl.ca.location"] == str(ca) and consumer["socket.keepalive.enable"] == "true"
    assert {k: consumer[k] for k in SECURITY_KEYS} == {k: producer[k] for k in SECURITY_KEYS} \
        == {k: admin[k] for k in SECURITY_KEYS}
    assert consumer["session.timeout.ms"] == "45000" and "session.timeout.ms" not in producer
    assert producer["linger.ms"] == "5" and "linger.ms" not in consumer
    assert consumer["socket.connection.setup.timeout.ms"] == "3000"  # overrides the default

    edx = settings(EVENT_BUS_KAFKA_API_KEY="key", EVENT_BUS_KAFKA_API_SECRET=API_SECRET).config("consumer")
    assert {k: edx[k] for k in SECURITY_KEYS[:4]} == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                                        "sasl.username": "key", "sasl.password": API_SECRET}


def test_production_defaults_are_librdkafkas_own_timings():
    consumer = settings().config("consumer")
    assert "session.timeout.ms" not in consumer and "heartbeat.interval.ms" not in consumer
    assert consumer["socket.connection.setup.timeout.ms"] == "10000"


def test_property_names_round_trip_through_variable_names():
    properties = {"socket.keepalive.enable": "true", "ssl.endpoint.identification.algorithm": "none",
                  "ssl_engine_id": "x"}
    variables = as_environment(properties, "KAFKA_CONSUMER_")
    assert "KAFKA_CONSUMER_SSL__ENGINE__ID" in variables
    assert {property_of(v, "KAFKA_CONSUMER_"): value for v, value in variables.items()} == properties


@pytest.mark.parametrize(("env", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD": PASSWORD},
     "KAFKA_SASL_MECHANISM=PLAIN needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": PASSWORD},
     "KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL is unset"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL: 'TLS' is not one of PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM"},
     "KAFKA_SASL_MECHANISM: 'SCRAM' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nowhere/ca.pem"},
     "KAFKA_SSL_CA_LOCATION: /nowhere/ca.pem does not exist"),
    ({"EVENT_BUS_KAFKA_API_KEY": "key"}, "EVENT_BUS_KAFKA_API_SECRET is not set"),
    ({"EVENT_BUS_KAFKA_API_KEY": "key", "EVENT_BUS_KAFKA_API_SECRET": API_SECRET, "KAFKA_SASL_USERNAME": "other"},
     "KAFKA_SASL_USERNAME and EVENT_BUS_KAFKA_API_KEY both set sasl.username"),
    ({"KAFKA_CONSUMER_ENABLE_AUTO_COMMIT": "true"}, "KAFKA_CONSUMER_ENABLE_AUTO_COMMIT: enable.auto.commit cannot"),
    ({"KAFKA_CLIENT_BOOTSTRAP_SERVERS": "x:1"}, r"KAFKA_CLIENT_BOOTSTRAP_SERVERS: .* \(set KAFKA_BOOTSTRAP_SERVERS\)"),
])
def test_settings_that_cannot_work_are_refused_naming_the_variable(env, message):
    with pytest.raises(KafkaSettingsError, match=f"^{message}") as refused:
        settings(**env)
    assert PASSWORD not in str(refused.value) and API_SECRET not in str(refused.value)


def test_properties_librdkafka_refuses_are_named_by_their_variable_when_the_client_is_built():
    unknown = 'KAFKA_CLIENT_NO_SUCH_THING: No such configuration property: "no.such.thing"'
    with pytest.raises(KafkaSettingsError, match=f"^{re.escape(unknown)}"):
        settings(KAFKA_CLIENT_NO_SUCH_THING="1").producer()
    invalid = 'KAFKA_CONSUMER_FETCH_MIN_BYTES: Invalid value for configuration property "fetch.min.bytes"'
    with pytest.raises(KafkaSettingsError, match=f"^{re.escape(invalid)}"):
        settings(KAFKA_CONSUMER_FETCH_MIN_BYTES="lots").consumer("g")


def test_secrets_are_hidden_in_repr_descriptions_and_librdkafka_messages():
    kafka = settings(**SCRAM, KAFKA_CLIENT_SASL_OAUTHBEARER_ASSERTION_PRIVATE_KEY_PASSPHRASE=PASSWORD)
    assert PASSWORD not in repr(kafka) and kafka.describe()["sasl.password"] == "***"
    assert kafka.describe()["sasl.oauthbearer.assertion.private.key.passphrase"] == "***"
    assert kafka.describe()["sasl.username"] == "groups"
    explained = kafka._explain("consumer", f'Invalid value "{PASSWORD}" for configuration property "sasl.password"')
    assert explained.startswith("KAFKA_SASL_PASSWORD: ") and PASSWORD not in explained


class Recorded:
    """Records the configuration of every client built, and builds the real one."""

    def __init__(self, monkeypatch):
        self.configs = []
        for name in ("Consumer", "Producer", "AdminClient"):
            real = getattr(kafka_clients, name)
            monkeypatch.setattr(kafka_clients, name, self._recording(name, real))

    def _recording(self, name, real):
        def build(config):
            self.configs.append((name, config))
            return real(config)
        return build

    def security(self, name):
        return [{k: c.get(k) for k in SECURITY_KEYS} for n, c in self.configs if n == name]


@pytest.mark.django_db
def test_the_consumer_and_the_dead_letter_producer_receive_the_same_security_settings(monkeypatch):
    recorded = Recorded(monkeypatch)
    config = ConsumerConfig.from_env("127.0.0.1:1", env=SCRAM)
    consumer = EventConsumer(config)
    consumer._consumer.close()
    [consumer_security] = recorded.security("Consumer")
    assert consumer_security["sasl.password"] == PASSWORD and consumer_security["security.protocol"] == "SASL_SSL"
    assert recorded.security("Producer") == [consumer_security]


def test_security_settings_without_a_cluster_are_refused_as_the_embedded_broker_is_plaintext(monkeypatch):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(CommandError, match=r"^KAFKA_SECURITY_PROTOCOL set but KAFKA_BOOTSTRAP_SERVERS is not\b"):
        call_command("groups_consume")


@pytest.mark.django_db
def test_a_sasl_ssl_client_against_a_plaintext_broker_reports_it_within_seconds(bootstrap_servers, caplog):
    env = {**SCRAM, "KAFKA_CLIENT_SOCKET_CONNECTION_SETUP_TIMEOUT_MS": "2000"}
    config = ConsumerConfig.from_env(bootstrap_servers, env=env)
    config = ConsumerConfig(kafka=config.kafka, topics=(f"t-{uuid.uuid4().hex[:6]}",), group_id="never-joins")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        EventConsumer(config).run(until=lambda stats: _client_errors(caplog) or time.monotonic() - started > 20)
    errors = _client_errors(caplog)
    assert errors, "no kafka_client_error logged within 20 s"
    assert time.monotonic() - started < 15
    assert errors[0]["code"] == "_ALL_BROKERS_DOWN" and "KAFKA_SECURITY_PROTOCOL" in errors[0]["hint"]
    assert errors[0]["security_protocol"] == "SASL_SSL"
    assert PASSWORD not in caplog.text


def _client_errors(caplog):
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "kafka_client_error"]


COMMAND = str(Path(sys.executable).parent / "groups-consumer")


@pytest.mark.slow
@pytest.mark.parametrize(("secret", "env", "bad", "refusal"), [
    (PASSWORD, SCRAM, {"KAFKA_SASL_USERNAME": ""}, "KAFKA_SASL_MECHANISM=SCRAM-SHA-512 needs KAFKA_SASL_USERNAME"),
    (API_SECRET, {"EVENT_BUS_KAFKA_API_KEY": "key", "EVENT_BUS_KAFKA_API_SECRET": API_SECRET},
     {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "both set security.protocol"),
])
def test_secrets_never_appear_in_logs_status_metrics_or_errors(tmp_path, bootstrap_servers, secret, env, bad,
                                                               refusal):
    """A consumer that cannot authenticate runs, logs, serves /metrics and reports status; then a bad setting."""
    port = _free_port()
    environment = {**os.environ, **env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                   "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers, "LOG_FORMAT": "json", "METRICS_PORT": str(port),
                   "KAFKA_CLIENT_SOCKET_CONNECTION_SETUP_TIMEOUT_MS": "1500", "KAFKA_CLIENT_DEBUG": "security"}
    subprocess.run([COMMAND, "migrate", "--no-input"], env=environment, check=True, capture_output=True)
    logs = tmp_path / "consumer.log"
    with logs.open("w") as log_file:  # librdkafka's security debug lines are many: a pipe would fill up
        consumer = subprocess.Popen([COMMAND, "consume"], env=environment, stdout=log_file, stderr=log_file)
        try:
            metrics = _get_when_up(f"http://127.0.0.1:{port}/metrics")
            time.sleep(4)  # connection attempts fail and are logged
            metrics += _get_when_up(f"http://127.0.0.1:{port}/metrics")
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=30)
    out = err = logs.read_text()
    assert "kafka_client_error" in err and 'groups_consumer_kafka_errors_total{code="_ALL_BROKERS_DOWN"}' in metrics
    status = subprocess.run([COMMAND, "status", "--json"], env=environment, capture_output=True, text=True)
    refused = subprocess.run([COMMAND, "consume"], capture_output=True, text=True, timeout=60,
                             env={**environment, **bad})
    assert refused.returncode != 0 and refusal in refused.stderr
    json.loads(status.stdout)
    for shown in (out, err, metrics, status.stdout, status.stderr, refused.stdout, refused.stderr):
        assert secret not in shown


def _get_when_up(url, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
