"""Django settings for type-checking this package (``make lint`` runs mypy here with them): the service's,
with this package's app installed, as its ``groups_consumer.apps`` entry point installs it once the package is
pip-installed. The django-stubs plugin reads the installed apps' models from them."""

from groups_consumer.settings import *  # noqa: F403 (a settings module extends another by star import)
from groups_consumer.settings import INSTALLED_APPS

APP = "certificate_facts.apps.CertificateFactsConfig"
if APP not in INSTALLED_APPS:  # not yet installed in this environment
    INSTALLED_APPS = [*INSTALLED_APPS, APP]
