"""The benchmark of the brief's figures (``make bench``).

On a fresh PostgreSQL database and the broker (``KAFKA_BOOTSTRAP_SERVERS`` or an embedded tansu), in one run:

- a synthetic platform (``platform``): users, courses across orgs, enrollments, grades, logins over 60
  days, countries, bulk-loaded; and 50 groups mixing every built-in criterion, scopes and exclusive sets;
- a mixed event stream in the LMS wire format (``stream``), produced to the broker;
- ``measures``: the raw consume+decode ceiling, the service's consumer end to end (one process, then
  ``--processes`` processes in one consumer group, each in a fresh interpreter: ``consumer_process``),
  edx-event-bus-kafka's consumer with no-op receivers (the operator's peer today), event-to-membership
  latency at a fixed produce rate, the cost of publishing membership changes (one consumer process with
  publishing off, then on with the relay in a process of its own, ``relay_process``, until the relay has
  published every change; alternated on the same stream and state; CPU per process from ``cpu``), a replay
  of the main stream from the beginning in one process and in ``--processes`` (into the platform loaded
  again), the
  end-to-end figure at several populations, the first full sync and a re-sync (wall time and peak RSS of the
  ``groups-consumer sync`` process), and ``naive``: the obvious implementation, as a baseline;
- ``report``: ``bench/results/latest.json`` (and a timestamped copy) and a table against the targets.
"""
