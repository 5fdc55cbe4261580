"""Django application configuration."""

from django.apps import AppConfig


class GroupsConsumerConfig(AppConfig):
    """The groups-consumer Django app: usable standalone or inside another Django project."""

    name = "groups_consumer"
    verbose_name = "Dynamic user groups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from groups_consumer.engine.definitions_version import on_group_saved_or_deleted
        from groups_consumer.models import Group

        post_save.connect(on_group_saved_or_deleted, sender=Group, dispatch_uid="groups_consumer_definitions")
        post_delete.connect(on_group_saved_or_deleted, sender=Group, dispatch_uid="groups_consumer_definitions")
