"""What consumers report about themselves, for ``groups-consumer status``."""

from django.db import models


class PartitionStatus(models.Model):
    """The last report of the consumer that owns one partition: its position, lag and dead letters."""

    consumer_group = models.CharField(max_length=255)
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    position = models.BigIntegerField(null=True, blank=True, help_text="next offset to consume")
    lag = models.BigIntegerField(null=True, blank=True, help_text="messages behind the end of the partition")
    dead_letters = models.BigIntegerField(default=0, help_text="messages of this partition sent to the DLQ")
    consumer = models.CharField(max_length=255, help_text="host and pid of the reporting consumer")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer_group", "topic", "partition"],
                                               name="partitionstatus_unique")]

    def __str__(self) -> str:
        return f"{self.consumer_group} {self.topic}[{self.partition}]"


class DeadLetterTally(models.Model):
    """How many messages a consumer group sent to the dead-letter topic for one reason, and when it last did."""

    consumer_group = models.CharField(max_length=255)
    reason = models.CharField(max_length=64, help_text="the dlq_reason header, e.g. invalid_course_key")
    count = models.BigIntegerField(default=0)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer_group", "reason"], name="deadlettertally_unique")]

    def __str__(self) -> str:
        return f"{self.consumer_group} {self.reason}: {self.count}"
