"""Django application configuration."""

from django.apps import AppConfig


class GroupsConsumerConfig(AppConfig):
    """The groups-consumer Django app: usable standalone or inside another Django project."""

    name = "groups_consumer"
    verbose_name = "Dynamic user groups"
    default_auto_field = "django.db.models.BigAutoField"
