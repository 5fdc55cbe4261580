"""Time-driven work: the scheduler's due syncs and time-relative flips, the leases that keep replicas apart,
and the refresh policy that decides what is due."""
