"""Every Kafka client the service creates is built here, from one set of connection and security settings.

``KafkaClientSettings.from_env`` reads the environment (see ``docs/consumer.rst``, "Connecting to your
cluster"):

- ``KAFKA_BOOTSTRAP_SERVERS``;
- ``KAFKA_SECURITY_PROTOCOL`` (``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``), ``KAFKA_SASL_MECHANISM``
  (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ``OAUTHBEARER``, ``GSSAPI``), ``KAFKA_SASL_USERNAME``,
  ``KAFKA_SASL_PASSWORD``, ``KAFKA_SSL_CA_LOCATION``, ``KAFKA_SSL_CERTIFICATE_LOCATION``,
  ``KAFKA_SSL_KEY_LOCATION``, ``KAFKA_SSL_KEY_PASSWORD``;
- edx-event-bus-kafka's ``EVENT_BUS_KAFKA_API_KEY`` / ``EVENT_BUS_KAFKA_API_SECRET``: as in that library,
  they mean ``SASL_SSL`` with ``PLAIN`` and the key and secret as user name and password;
- any other librdkafka property as ``KAFKA_CLIENT_<PROPERTY>`` (every client), ``KAFKA_CONSUMER_<PROPERTY>``
  (consumers only) or ``KAFKA_PRODUCER_<PROPERTY>`` (producers only): the property name in upper case with
  ``.`` written ``_`` (and a literal ``_`` written ``__``), e.g. ``KAFKA_CONSUMER_SESSION_TIMEOUT_MS=45000``.

Guarantees: a setting given twice with different values, a SASL mechanism without its credentials, a file
that does not exist, a property librdkafka does not know or a value it refuses is a ``KafkaSettingsError``
naming the environment variable, raised when the settings are read or the first client is built (start-up).
Secret values (passwords, the API secret, key passwords) never appear in ``repr``, logs or error messages.
Broker errors (unreachable, wrong protocol, failed authentication) are logged by ``ClientErrorLog`` within
seconds, with a hint naming the settings to check.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from groups_consumer.pipeline import metrics

log = structlog.get_logger(__name__)

Role = Literal["consumer", "producer", "admin"]
ROLES: tuple[Role, ...] = ("consumer", "producer", "admin")
ClientT = TypeVar("ClientT", Consumer, Producer, AdminClient)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
#: Mechanisms that authenticate with a user name and a password.
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Named variables and the librdkafka property each sets.
NAMED_VARIABLES = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}
#: Passthrough prefixes and the clients they reach.
PREFIXES: dict[str, tuple[Role, ...]] = {
    "KAFKA_CLIENT_": ROLES,
    "KAFKA_CONSUMER_": ("consumer",),
    "KAFKA_PRODUCER_": ("producer",),
}
FILE_PROPERTIES = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.crl.location",
                   "ssl.keystore.location")
#: Properties the service sets itself, because its guarantees depend on them, and where to change them.
RESERVED = {
    "bootstrap.servers": "set KAFKA_BOOTSTRAP_SERVERS",
    "group.id": "set KAFKA_GROUP_ID",
    "enable.auto.commit": "offsets are committed after the database transaction that applied them",
    "enable.auto.offset.store": "offsets are committed after the database transaction that applied them",
    "auto.offset.reset": "a group with no committed offsets starts from the earliest message: facts are built "
                         "from history",
    "enable.idempotence": "dead letters and published events rely on it",
}
#: Defaults an operator may override. librdkafka waits 30 s for a connection to be set up; a TLS client on a
#: plaintext listener (or the reverse) may wait that long in silence, so this follows the Java client (10 s).
DEFAULTS = {"client.id": "groups-consumer", "socket.connection.setup.timeout.ms": "10000"}
SECRET_WORDS = ("password", "secret", "passphrase", "private.key", "extensions")
_PROPERTY_IN_MESSAGE = re.compile(r'property:? "([a-z0-9._]+)"')


class KafkaSettingsError(ValueError):
    """Kafka settings that cannot work; the message names the environment variable to fix."""


def is_secret(prop: str) -> bool:
    """True for a property whose value must never be shown."""
    return any(word in prop for word in SECRET_WORDS) or prop in {"ssl.key.pem", "sasl.oauthbearer.config"}


def property_of(variable: str, prefix: str) -> str:
    """``KAFKA_CLIENT_SOCKET_KEEPALIVE_ENABLE`` -> ``socket.keepalive.enable`` (``__`` stands for ``_``)."""
    return variable[len(prefix):].lower().replace("__", "\0").replace("_", ".").replace("\0", "_")


def as_environment(properties: Mapping[str, object], prefix: str = "KAFKA_CLIENT_") -> dict[str, str]:
    """The environment variables that pass ``properties`` through (the inverse of ``property_of``)."""
    return {prefix + name.replace("_", "__").replace(".", "_").upper(): str(value)
            for name, value in properties.items()}


@dataclass(frozen=True)
class Setting:
    """A librdkafka property's value and the environment variable (or ``default``, ``code``) it came from."""

    value: str = field(repr=False)
    source: str


@dataclass(frozen=True)
class KafkaClientSettings:
    """Connection and security settings of every Kafka client, by role; built once, never changed (copies
    with more properties come from ``with_properties``)."""

    bootstrap_servers: str
    properties: Mapping[Role, Mapping[str, Setting]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, bootstrap_servers: str | None = None,
                 env: Mapping[str, str] = os.environ) -> KafkaClientSettings:
        """The settings the environment describes; ``bootstrap_servers`` overrides the environment."""
        servers = bootstrap_servers or env.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            raise KafkaSettingsError("KAFKA_BOOTSTRAP_SERVERS is not set")
        common: dict[str, Setting] = {name: Setting(value, "default") for name, value in DEFAULTS.items()}
        given: dict[str, Setting] = {}
        for name, setting in _security_settings(env).items():
            _put(given, name, setting)
        scoped: dict[Role, dict[str, Setting]] = {"consumer": {}, "producer": {}, "admin": {}}
        for variable, value in sorted(env.items()):
            for prefix, roles in PREFIXES.items():
                if variable.startswith(prefix) and len(variable) > len(prefix):
                    name = property_of(variable, prefix)
                    if name in RESERVED:
                        raise KafkaSettingsError(f"{variable}: {name} cannot be set this way ({RESERVED[name]})")
                    if prefix == "KAFKA_CLIENT_":
                        _put(given, name, Setting(value, variable))
                    else:
                        for role in roles:
                            scoped[role][name] = Setting(value, variable)
        common.update(given)
        _check(common)
        return cls(servers, {role: {**common, **scoped[role]} for role in ROLES})

    @classmethod
    def plain(cls, bootstrap_servers: str) -> KafkaClientSettings:
        """Settings for a plaintext broker with no security and nothing passed through (tests, the embedded
        broker)."""
        return cls.from_env(bootstrap_servers, env={})

    def with_properties(self, role: Role, properties: Mapping[str, object]) -> KafkaClientSettings:
        """A copy with ``properties`` added for one role (set by code, e.g. the test broker's timings)."""
        changed = {**self.properties.get(role, {}), **{k: Setting(str(v), "code") for k, v in properties.items()}}
        return KafkaClientSettings(self.bootstrap_servers, {**self.properties, role: changed})

    def config(self, role: Role, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The librdkafka configuration of a client of ``role``: its properties, then what the service fixes."""
        return {"bootstrap.servers": self.bootstrap_servers,
                **{name: setting.value for name, setting in self.properties.get(role, {}).items()},
                **(fixed or {})}

    def describe(self, role: Role = "consumer") -> dict[str, str]:
        """The properties of ``role`` for logs and status: secret values replaced by ``***``."""
        shown = {"bootstrap.servers": self.bootstrap_servers}
        for name, setting in self.properties.get(role, {}).items():
            shown[name] = "***" if is_secret(name) else setting.value
        return shown

    def consumer(self, group_id: str, **fixed: Any) -> Consumer:
        """A consumer in ``group_id`` with the service's settings, its errors logged."""
        return self._build(Consumer, "consumer", {"group.id": group_id, **fixed})

    def producer(self, **fixed: Any) -> Producer:
        """A producer with the service's settings, its errors logged."""
        return self._build(Producer, "producer", fixed)

    def admin(self) -> AdminClient:
        """An admin client with the service's settings, its errors logged."""
        return self._build(AdminClient, "admin", {})

    def _build(self, client: Callable[[dict[str, Any]], ClientT], role: Role, fixed: Mapping[str, Any]) -> ClientT:
        settings = self.config(role, {"error_cb": ClientErrorLog(role, self), "logger": LIBRDKAFKA_LOG, **fixed})
        try:
            return client(settings)
        except KafkaException as exc:
            raise KafkaSettingsError(self._explain(role, exc.args[0].str())) from None

    def _explain(self, role: Role, message: str) -> str:
        """librdkafka's refusal, naming the variable that set the property and with secrets hidden."""
        properties = self.properties.get(role, {})
        named = _PROPERTY_IN_MESSAGE.search(message)
        candidates = [named.group(1)] if named else [p for p in properties if p in message]
        sources = sorted({properties[p].source for p in candidates if p in properties})
        return f"{', '.join(sources) or 'Kafka settings'}: {self.redact(message, role)}"

    def redact(self, text: str, role: Role = "consumer") -> str:
        """``text`` with every secret value of ``role`` replaced by ``***``."""
        for name, setting in self.properties.get(role, {}).items():
            if is_secret(name) and setting.value:
                text = text.replace(setting.value, "***")
        return text


def _security_settings(env: Mapping[str, str]) -> dict[str, Setting]:
    """The named security variables and edx-event-bus-kafka's API key, as properties."""
    found: dict[str, Setting] = {}
    key, secret = env.get("EVENT_BUS_KAFKA_API_KEY"), env.get("EVENT_BUS_KAFKA_API_SECRET")
    if bool(key) != bool(secret):
        missing = "EVENT_BUS_KAFKA_API_SECRET" if key else "EVENT_BUS_KAFKA_API_KEY"
        raise KafkaSettingsError(f"{missing} is not set: the API key and secret go together")
    if key and secret:
        source = "EVENT_BUS_KAFKA_API_KEY"
        found.update({"security.protocol": Setting("SASL_SSL", source), "sasl.mechanism": Setting("PLAIN", source),
                      "sasl.username": Setting(key, source),
                      "sasl.password": Setting(secret, "EVENT_BUS_KAFKA_API_SECRET")})
    for variable, name in NAMED_VARIABLES.items():
        value = env.get(variable)
        if value:
            if name in {"security.protocol", "sasl.mechanism"}:
                value = value.upper()
            _put(found, name, Setting(value, variable))
    return found


def _put(settings: dict[str, Setting], name: str, setting: Setting) -> None:
    """Add a property; two variables giving it different values is an error naming both."""
    previous = settings.get(name)
    if previous is not None and previous.value != setting.value:
        raise KafkaSettingsError(f"{setting.source} and {previous.source} both set {name}, to different values")
    settings[name] = setting


def _check(properties: Mapping[str, Setting]) -> None:
    """Refuse combinations that cannot connect, naming the variables."""
    protocol = properties.get("security.protocol")
    mechanism = properties.get("sasl.mechanism")
    if protocol and protocol.value.upper() not in SECURITY_PROTOCOLS:
        raise KafkaSettingsError(f"{protocol.source}: {protocol.value!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
    uses_sasl = protocol is not None and protocol.value.upper().startswith("SASL_")
    if mechanism:
        if mechanism.value.upper() not in SASL_MECHANISMS:
            raise KafkaSettingsError(f"{mechanism.source}: {mechanism.value!r} is not one of "
                                     f"{', '.join(SASL_MECHANISMS)}")
        if not uses_sasl:
            raise KafkaSettingsError(f"{mechanism.source} is set but KAFKA_SECURITY_PROTOCOL is "
                                     f"{protocol.value if protocol else 'unset (PLAINTEXT)'}: "
                                     "use SASL_SSL or SASL_PLAINTEXT")
        if mechanism.value.upper() in PASSWORD_MECHANISMS:
            missing = [variable for variable, name in NAMED_VARIABLES.items()
                       if name in {"sasl.username", "sasl.password"} and name not in properties]
            if missing:
                raise KafkaSettingsError(f"{mechanism.source}={mechanism.value} needs {' and '.join(missing)}")
    elif uses_sasl and protocol:
        raise KafkaSettingsError(f"{protocol.source}={protocol.value} needs KAFKA_SASL_MECHANISM "
                                 f"({', '.join(SASL_MECHANISMS)})")
    for name in FILE_PROPERTIES:
        setting = properties.get(name)
        if setting and setting.value != "probe" and not os.path.exists(setting.value):
            raise KafkaSettingsError(f"{setting.source}: {setting.value} does not exist")


#: librdkafka's own log lines, through the service's structured logging.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

#: Error codes that mean the broker cannot be reached or refuses us, with what to check.
HINTS = {
    KafkaError._ALL_BROKERS_DOWN: "no broker answers: check KAFKA_BOOTSTRAP_SERVERS, and that KAFKA_SECURITY_PROTOCOL "
                                  "matches the listener (a TLS client on a plaintext listener, or the reverse, "
                                  "fails this way)",
    KafkaError._TRANSPORT: "connection failed: check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL",
    KafkaError._AUTHENTICATION: "authentication failed: check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and "
                                "KAFKA_SASL_PASSWORD (or EVENT_BUS_KAFKA_API_KEY / _SECRET)",
    KafkaError._SSL: "TLS failed: check KAFKA_SSL_CA_LOCATION and that the listener speaks TLS",
}


class ClientErrorLog:
    """librdkafka's error callback: each kind of error is logged when first seen, then at most every
    ``every_s`` seconds (librdkafka repeats them on every reconnect), with a hint; each is counted in
    ``groups_consumer_kafka_errors_total``. Messages are redacted."""

    def __init__(self, role: Role, settings: KafkaClientSettings, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._role, self._settings, self._every_s, self._clock = role, settings, every_s, clock
        self._last: dict[int, float] = {}

    def __call__(self, error: KafkaError) -> None:
        code = error.code()
        metrics.KAFKA_ERRORS.labels(error.name()).inc()
        now = self._clock()
        if code in self._last and now - self._last[code] < self._every_s:
            return
        self._last[code] = now
        level = log.error if error.fatal() or code in HINTS else log.warning
        level("kafka_client_error", client=self._role, code=error.name(), fatal=error.fatal(),
              error=self._settings.redact(error.str(), self._role), hint=HINTS.get(code, ""),
              bootstrap_servers=self._settings.bootstrap_servers,
              security_protocol=self._settings.describe(self._role).get("security.protocol", "PLAINTEXT"))
