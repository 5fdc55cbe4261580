"""Settings for running groups-consumer as a standalone service.

Everything an operator sets comes from the environment (12-factor). A host Django project that installs
``groups_consumer`` as an app uses its own settings instead and may set the ``GROUPS_CONSUMER_*`` keys below.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from groups_consumer.log_config import configure_logging

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "groups-consumer-has-no-web-sessions")
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.admin",
    "django.contrib.messages",
    "django.contrib.sessions",
    "groups_consumer",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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

# Backend clients by name, overriding the ``groups_consumer.backends`` entry points:
# {"facts": "dotted.path.to.BackendClass"}.
GROUPS_CONSUMER_BACKENDS: dict[str, str] = {}

LOGGING_CONFIG = None
configure_logging(json=os.environ.get("LOG_FORMAT", "json" if not os.isatty(2) else "console") == "json",
                  level=os.environ.get("LOG_LEVEL", "INFO").upper())
