"""Backend clients: the only way criteria reach data (seed 000, section I)."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import ClassVar, Generic, TypeVar

#: What ``snapshots`` holds per user: the type the backend's criteria read in ``test``.
SnapshotT_co = TypeVar("SnapshotT_co", covariant=True)


class BackendClient(abc.ABC, Generic[SnapshotT_co]):
    """Base class of backend clients.

    A backend answers set-based questions with ``Selection`` objects (a ``Query`` over the user-facts table
    when it has ORM access, ``Ids`` otherwise) and loads per-user snapshots in bulk for incremental
    evaluation. The engine calls ``snapshots`` once per batch of users, whatever the number of groups.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def snapshots(self, user_ids: Iterable[int]) -> Mapping[int, SnapshotT_co]:
        """One snapshot per known user among ``user_ids``; unknown users are left out."""
