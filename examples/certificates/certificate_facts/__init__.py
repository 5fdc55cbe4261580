"""Course certificates as learner facts, for groups-consumer: an example fact-source plugin.

- ``events``: the LMS's certificate events this package consumes, and the rules their payloads must satisfy;
- ``models``: the fact table (one row per user and course), in the ``certificate_facts`` Django app;
- ``merge``: how an event's facts merge into that table (monotonic by event time, in bulk);
- ``snapshot``: what per-user evaluation reads: a user's certificates;
- ``source``: the fact source ``certificates``: events to facts, and the questions criteria ask about them;
- ``criterion``: the criterion type ``certificates`` ("at least N certificates, earned within D days").
"""
