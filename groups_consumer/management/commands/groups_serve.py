"""``groups-consumer serve [--port N]``: the web process (REST API, admin, ``/health``) under gunicorn."""

import os
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from gunicorn.app.base import BaseApplication

from groups_consumer.management.base import GroupsCommand
from groups_consumer.settings import DEFAULT_SECRET_KEY
from groups_consumer.wsgi import application


class WebServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn running this project's WSGI application with options given in code, not in a file."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return application


class Command(GroupsCommand):
    """Serve the REST API under /api/v1/, the admin under /admin/ and /health with gunicorn."""

    requires_system_checks = "__all__"

    help = "Serve the REST API (/api/v1/), the admin (/admin/) and /health (gunicorn)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                            help="TCP port (default: PORT, else 8000)")
        parser.add_argument("--host", default=os.environ.get("WEB_HOST", "0.0.0.0"),
                            help="address to listen on (default: WEB_HOST, else every interface)")
        parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")),
                            help="worker processes (default: WEB_CONCURRENCY, else 2)")
        parser.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS", "4")),
                            help="threads per worker (default: WEB_THREADS, else 4)")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.SECRET_KEY == DEFAULT_SECRET_KEY:
            raise CommandError("refusing to serve with the built-in default DJANGO_SECRET_KEY: sessions and CSRF "
                               "tokens would be forgeable. Set DJANGO_SECRET_KEY to a long random value "
                               "(python -c 'import secrets; print(secrets.token_urlsafe(50))').")
        WebServer({"bind": f"{options['host']}:{options['port']}", "workers": options["workers"],
                   "threads": options["threads"], "worker_class": "gthread", "accesslog": "-",
                   "timeout": 120, "graceful_timeout": 30}).run()
