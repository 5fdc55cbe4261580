"""The path of an event, one module per stage:

``decode`` (bytes + headers -> PlatformEvent) -> ``facts_update`` (apply facts, monotonic by event time)
-> ``route`` (changed facts -> affected groups) -> ``batch`` (evaluate affected users, write differences, one
transaction) -> ``consumer`` (Kafka: poll, dead-letter, commit offsets after the transaction).
"""
