"""Tasks and sites as the researcher's verified copy shows them.

``TaskBook`` finds what the researcher names (a site by organisation or key, a task by id,
unique prefix or ``#index``), syncing once when the name is not in the copy yet; it makes
each task's ``TaskView`` (which target answered, received it, or has not been seen), follows
a task until every target answered, and says why a silent site is silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ptm_p2p.client.connection import Connection
from ptm_p2p.client.views import TaskView
from ptm_p2p.errors import TaskLookupError
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.replay import LoggedTask

T = TypeVar("T")
Progress = Callable[[TaskView], None]
"""Sees every view of a task being followed (progress displays)."""


class TaskBook:
    """Finding, viewing and following tasks in the verified copy."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def state(self) -> Any:
        return self.connection.state

    def _synced(self, find: Callable[[], T]) -> T:
        """``find()``, and once more after a sync if the copy does not know the name yet."""
        try:
            return find()
        except TaskLookupError:
            self.connection.sync()
            return find()

    # --- sites -----------------------------------------------------------------------------

    def sites(self) -> dict[str, bytes]:
        """Active sites of the collaboration: organisation -> key."""
        return {m.org: m.key for m in self.state.active_members("site")}

    def site_keys(self, to: str | Sequence[str]) -> list[bytes]:
        """The keys of ``to`` ("all", or site organisations or keys), in order, each once."""
        sites = self.sites()
        if to == "all":
            if not sites:
                raise TaskLookupError("the collaboration has no admitted sites yet")
            return list(sites.values())
        names = [to] if isinstance(to, str) else list(to)
        keys: list[bytes] = []
        by_key = {key.hex(): key for key in sites.values()}
        for name in names:
            key = sites.get(name) or by_key.get(name.lower())
            if key is None:
                known = ", ".join(sorted(sites)) or "none yet"
                raise TaskLookupError(
                    f"no admitted site named {name!r} (by organisation or key); sites: {known}"
                )
            if key not in keys:
                keys.append(key)
        return keys

    def site_keys_synced(self, to: str | Sequence[str]) -> list[bytes]:
        """``site_keys``, syncing once if a name is unknown (admitted since our last look?)."""
        return self._synced(lambda: self.site_keys(to))

    # --- tasks -----------------------------------------------------------------------------

    def task(self, task_id: str) -> LoggedTask:
        """The task with this id (or unique prefix, or #index); syncs once if it is unknown."""
        return self._synced(lambda: self._task_in_copy(task_id))

    def _task_in_copy(self, task_id: str) -> LoggedTask:
        text = task_id.strip().lower().lstrip("#")
        tasks = self.state.tasks
        if text.isdigit() and len(text) < 16:
            found = [t for t in tasks.values() if t.index == int(text)]
        else:
            found = [t for h, t in tasks.items() if h.hex().startswith(text)] if text else []
        if len(found) != 1:
            what = "no task" if not found else f"{len(found)} tasks"
            raise TaskLookupError(
                f"{what} with id {task_id!r} in this home's verified copy of the log "
                f"({len(tasks)} tasks); give the id `ptm publish` printed (or `ptm tasks`)"
            )
        task: LoggedTask = found[0]
        return task

    def view(self, task: LoggedTask) -> TaskView:
        """The task with each target's progress: its signed status, else ``received`` (its
        node cosigned a log holding the task), else ``not seen``."""
        state = self.state
        vouched = self.connection.follower.vouched
        progress: dict[str, str] = {}
        for key in task.targets:
            name = state.members[key].org if key in state.members else key.hex()[:16]
            result = task.results.get(key)
            if result is not None:
                progress[name] = result.status
            elif vouched.get(key, 0) > task.index:
                progress[name] = "received"
            else:
                progress[name] = "not seen"
        return TaskView(
            id=task.hash.hex(),
            index=task.index,
            image=task.image,
            publisher=state.describe(task.publisher),
            algorithm=task.algorithm,
            progress=progress,
            cancelled=task.cancelled_at is not None,
        )

    def view_of_entry(self, entry: Entry, index: int, image: str) -> TaskView:
        """The view of a task entry just submitted (before the copy holds it): no target has
        seen it yet."""
        targets = entry.payload["targets"]
        names = {m.key: m.org for m in self.state.members.values()}
        return TaskView(
            id=entry.hash.hex(),
            index=index,
            image=image,
            # the form every other view uses (``state.describe``): key prefix (organisation)
            publisher=self.state.describe(self.connection.home.public_key),
            algorithm=entry.payload.get("algorithm"),
            progress={names.get(k, k.hex()[:16]): "not seen" for k in targets},
            cancelled=False,
        )

    def views(self, mine: bool = False) -> list[TaskView]:
        """Every task of the copy (only ours with ``mine``), oldest first."""
        me = self.connection.home.public_key
        return [
            self.view(t)
            for t in sorted(self.state.tasks.values(), key=lambda t: t.index)
            if not mine or t.publisher == me
        ]

    def follow(self, task_id: str, deadline: float | None, show: Progress | None) -> TaskView:
        """Follow a task until every target answered or ``deadline`` (``time.monotonic()``)
        passes; the last view either way, every view also to ``show``."""
        while True:
            size = self.connection.sync()
            view = self.view(self.task(task_id))
            if show is not None:
                show(view)
            if view.done:
                return view
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return view
            poll = 1.0 if remaining is None else max(0.05, min(1.0, remaining))
            self.connection.long_poll(size, poll)

    def silent_sites(self, view: TaskView) -> dict[str, str]:
        """Why each target still ``not seen`` has not received the task, as far as the
        verified copy tells: the largest log size the site cosigned (its node verifies and
        cosigns every checkpoint it receives), against the task's entry and the log now. A
        site far behind, or never heard from, has a daemon that is down or cut off."""
        names = {m.org: m.key for m in self.state.members.values()}
        size = self.state.size
        vouched = self.connection.follower.vouched
        out: dict[str, str] = {}
        for site, state in view.progress.items():
            if state != "not seen":
                continue
            key = names.get(site)
            cosigned = vouched.get(key, 0) if key is not None else 0
            if cosigned:
                seen = f"its node last cosigned the log at size {cosigned}"
            else:
                seen = "its node has cosigned no checkpoint this client has seen"
            out[site] = (
                f"{seen} (the task is entry {view.index}, the log has {size} entries): its "
                "daemon seems down or cut off from the hub; its operator can check with "
                "`ptm status`"
            )
        return out
