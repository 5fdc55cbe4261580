"""WSGI entry point of the web process (``groups-consumer serve`` runs it under gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "groups_consumer.settings")
application = get_wsgi_application()
