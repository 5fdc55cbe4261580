"""Django application configuration."""

from django.apps import AppConfig


class GroupsConsumerConfig(AppConfig):
    """The groups-consumer Django app: usable standalone or inside another Django project."""

    name = "groups_consumer"
    verbose_name = "Dynamic user groups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_save

        from groups_consumer.engine.definitions_version import on_group_saved_or_deleted
        from groups_consumer.models import Group
        from groups_consumer.pg_arrays import on_connection_created

        post_save.connect(on_group_saved_or_deleted, sender=Group, dispatch_uid="groups_consumer_definitions")
        post_delete.connect(on_group_saved_or_deleted, sender=Group, dispatch_uid="groups_consumer_definitions")
        connection_created.connect(on_connection_created, dispatch_uid="groups_consumer_pg_arrays")
