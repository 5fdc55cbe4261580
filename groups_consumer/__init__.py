"""groups-consumer: dynamic user groups for Open edX, kept current by platform events."""
