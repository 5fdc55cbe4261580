"""Settings for running groups-consumer as a standalone service.

Everything an operator sets comes from the environment (12-factor). A host Django project that installs
``groups_consumer`` as an app uses its own settings instead and may set the ``GROUPS_CONSUMER_*`` keys below.
"""

import importlib.metadata
import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from groups_consumer.log_config import configure_logging

#: The built-in key: fine for the consumer and the scheduler (they sign nothing), refused by ``serve``.
DEFAULT_SECRET_KEY = "groups-consumer-has-no-web-sessions"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEFAULT_SECRET_KEY)
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
ROOT_URLCONF = "groups_consumer.urls"
WSGI_APPLICATION = "groups_consumer.wsgi.application"
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(Path.cwd() / "staticfiles"))

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.admin",
    "django.contrib.messages",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "groups_consumer",
    # Plugin packages whose fact sources keep their facts in Django models of their own declare their app
    # under this entry-point group (``forum_activity = forum_activity.apps.ForumActivityConfig``).
    *sorted({entry_point.value.replace(":", ".")  # "pkg.apps:Config" and "pkg.apps.Config" alike
             for entry_point in importlib.metadata.entry_points(group="groups_consumer.apps")}),
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Served by the web process itself (whitenoise), from the installed packages: no collectstatic step needed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # the embedded default and tests serve without collectstatic

# The REST API (groups_consumer/web/). No anonymous access: the LMS's JWTs (edx-drf-extensions, configured by
# JWT_AUTH as in the platform), the admin's session (with CSRF) and tokens for services.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "edx_rest_framework_extensions.auth.jwt.authentication.JwtAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["groups_consumer.web.permissions.ReadAuthenticatedWriteEditors"],
    "DEFAULT_PARSER_CLASSES": ["groups_consumer.web.parsers.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "groups_consumer.web.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "groups-consumer API",
    "DESCRIPTION": "Dynamic user groups of an Open edX platform: criteria, groups, members, change log.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # the schema and docs too
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "groups_consumer.web.schema.refusals"],
}
# edx-drf-extensions reports to New Relic by default; this service has no APM agent.
OPENEDX_TELEMETRY: list[str] = []
#: The platform's JWT settings, as one JSON object in the environment: the keys of the LMS's ``JWT_AUTH``
#: (``JWT_ISSUERS``, ``JWT_PUBLIC_SIGNING_JWK_SET``, ``JWT_AUDIENCE``, ...), over the platform's defaults below.
#: Unset: no issuer is trusted, so no JWT is accepted.
JWT_AUTH = {
    "JWT_ISSUERS": [],
    "JWT_PUBLIC_SIGNING_JWK_SET": None,
    "JWT_AUTH_COOKIE": None,
    "JWT_AUTH_HEADER_PREFIX": "JWT",
    "JWT_ALGORITHM": "HS256",
    "JWT_VERIFY_EXPIRATION": True,
    "JWT_VERIFY_AUDIENCE": True,
    # edx-drf-extensions' handler behind a signature check it may skip (groups_consumer/web/lms_jwt.py)
    "JWT_DECODE_HANDLER": "groups_consumer.web.lms_jwt.decode_handler",
    **json.loads(os.environ.get("JWT_AUTH", "{}")),
}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DEFAULT_DATABASE_URL = f"sqlite:///{Path.cwd() / 'groups-consumer.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), conn_max_age=600)
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (consumer, scheduler, CLI) share the file: readers never block the writer (WAL), and
    # a transaction takes the write lock when it begins (IMMEDIATE), so concurrent writers queue for up to
    # ``timeout`` seconds instead of failing on a lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Limits on group definitions (README, "Group definitions"): any of max_depth, max_leaves, max_list_items,
# max_document_bytes, max_documents; the others keep their defaults (groups_consumer/definition_limits.py).
DEFINITION_LIMIT_VARIABLES = {"max_depth": "DEFINITION_MAX_DEPTH", "max_leaves": "DEFINITION_MAX_LEAVES",
                              "max_list_items": "DEFINITION_MAX_LIST_ITEMS",
                              "max_document_bytes": "DEFINITION_MAX_DOCUMENT_BYTES",
                              "max_documents": "DEFINITION_MAX_DOCUMENTS"}
GROUPS_CONSUMER_DEFINITION_LIMITS: dict[str, int] = {}
for _limit, _variable in DEFINITION_LIMIT_VARIABLES.items():
    if _variable in os.environ:
        try:
            GROUPS_CONSUMER_DEFINITION_LIMITS[_limit] = int(os.environ[_variable])
        except ValueError:
            raise ImproperlyConfigured(f"{_variable}: an integer, not {os.environ[_variable]!r}") from None

# Membership-change events (groups_consumer/publishing/config.py): on when KAFKA_MEMBERSHIP_TOPIC is set.
GROUPS_CONSUMER_MEMBERSHIP_TOPIC = os.environ.get("KAFKA_MEMBERSHIP_TOPIC", "").strip()
try:
    GROUPS_CONSUMER_OUTBOX_MAX_PENDING = int(os.environ.get("MEMBERSHIP_OUTBOX_MAX_PENDING", 1_000_000))
except ValueError as exc:
    raise ImproperlyConfigured(f"MEMBERSHIP_OUTBOX_MAX_PENDING: {exc}") from None
if GROUPS_CONSUMER_OUTBOX_MAX_PENDING < 1:
    raise ImproperlyConfigured("MEMBERSHIP_OUTBOX_MAX_PENDING must be >= 1")

# Backend clients by name, overriding the ``groups_consumer.backends`` entry points:
# {"facts": "dotted.path.to.BackendClass"}.
GROUPS_CONSUMER_BACKENDS: dict[str, str] = {}

LOGGING_CONFIG = None
configure_logging(json=os.environ.get("LOG_FORMAT", "json" if not os.isatty(2) else "console") == "json",
                  level=os.environ.get("LOG_LEVEL", "INFO").upper())
