"""The Django app holding the certificate facts' model and migrations."""

from django.apps import AppConfig


class CertificateFactsConfig(AppConfig):
    """Declared under the ``groups_consumer.apps`` entry point, so groups-consumer installs it."""

    name = "certificate_facts"
    label = "certificate_facts"
    verbose_name = "Certificate facts"
    default_auto_field = "django.db.models.BigAutoField"
