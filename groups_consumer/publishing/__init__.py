"""Publishing membership changes as events: the transactional outbox and its relay to Kafka.

Every writer of memberships (``engine.membership_writer``) adds one ``OutboxMessage`` per change in the
transaction that makes it (``outbox``); the relay (``relay``, the ``groups-consumer relay`` process) reads the
rows in id order, sends them in the openedx event-bus wire format (``wire``) and deletes them once the broker
acknowledged them. ``snapshot`` adds the current members of groups as outbox rows for a new subscriber.
See ``docs/membership-events.rst``.
"""
