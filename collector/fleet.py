"""Several collectors on one PostgreSQL are one service: commands reach a sensor wherever it is.

Each collector holds the links of the sensors connected to it. What an analyst asks of one
collector and the sensors of another must get goes through the shared database: a row in the
``commands`` table (durable: a collector that missed a wake-up still finds it) and a NOTIFY on
:data:`collector.store.NOTIFY_CHANNEL` sent at the row's commit (so the others read it within
milliseconds instead of polling). Each collector LISTENs on a connection of its own and also reads
the table every :data:`POLL_S`, in case a notification was lost with a dropped connection.

Two kinds of command:

- ``push`` (image policies, rule sets, accepted baseline items, merged baselines): every other
  collector sends the message to the sensors it holds (but ``except_sensor``).
- ``action`` (pause, unpause, kill, stop a container): the collector whose sensor sees the
  container claims the row (an UPDATE only one collector wins), sends it, and audits the sensor's
  answer under the analyst who asked (once: only the claimant audits); it writes the answer into
  the row, which wakes the asking collector. A collector that does not see the container says so
  (``declines``): when every other live collector has declined, the analyst hears NotFound at once.

Liveness: each collector writes its heartbeat into ``collectors`` every :data:`HEARTBEAT_S`; the
sensors table says which collector holds each sensor, so ``sensors list`` shows it and a sensor
whose collector was killed outright is shown down.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, cast

from collector.argtypes import MAX_TIMEOUT_S
from collector.convert import action_message, pb
from collector.errors import CollectorError, InvalidArgument, NotFound, Unavailable
from collector.sensorlink import Hub
from collector.store import NOTIFY_CHANNEL, SqlStore

log = logging.getLogger(__name__)
POLL_S = 1.0  # the table is read this often even without a notification
HEARTBEAT_S = 2.0
KEEP_PUSHES_S = 600.0  # pushes older than this are deleted (a sensor gets the stored state on connect)
KEEP_ACTIONS_S = MAX_TIMEOUT_S + 600.0  # actions: past the longest an analyst may wait for one
_LATE_WINDOW = 256  # ids below the newest seen re-read: a row committed after a later one is not missed


class Fleet:
    """This collector's part in a fleet: publishes pushes and actions, executes the others'."""

    def __init__(self, store: SqlStore, hub: Hub, collector_id: str, address: str) -> None:
        self.store, self.hub, self.me, self.address = store, hub, collector_id, address
        self.started_ns = time.time_ns()
        self._stop = threading.Event()
        self._wakes: dict[int, threading.Event] = {}  # command id -> its asker, woken by NOTIFY
        self._lock = threading.Lock()
        self._seen: dict[int, None] = {}  # command ids handled, the newest 4 * _LATE_WINDOW (insertion order)
        self._last_id = 0
        self._thread = threading.Thread(target=self._run, name="collector-fleet", daemon=True)

    def start(self) -> Fleet:
        self.store.collector_alive(self.me, self.address, self.started_ns)  # counted by others from now
        self._last_id = self.store.last_command_id()  # older pushes: sensors get the store's state on hello
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.collector_gone(self.me)
        except CollectorError as err:  # the store is closing too: the row goes stale in a few seconds
            log.warning("cannot remove collector %s from the fleet: %s", self.me, err)

    # -- this collector asks ---------------------------------------------------------------------
    def publish(self, msg: pb.CollectorMessage, except_id: str = "") -> None:
        """Send ``msg`` to the sensors every other collector holds."""
        self.store.add_command("push", self.me, msg.SerializeToString(), except_sensor=except_id)

    def action(self, ref: str, action: int, actor: str, reason: str, timeout_s: float) -> pb.ActionResult:
        """A container action for whichever other collector's sensor sees container ``ref``:
        the sensor's answer, NotFound if no collector sees it, Unavailable past ``timeout_s``."""
        others = [c for c in self.store.collectors() if c["collector_id"] != self.me]
        if not others:
            raise NotFound(f"no connected sensor sees container {ref} (by id or name)")
        wake = threading.Event()
        payload = json.dumps({"action": action, "reason": reason}).encode()
        with self._lock:  # registered before the row exists: its first notification is not missed
            command_id = self.store.add_command("action", self.me, payload, target=ref, actor=actor)
            self._wakes[command_id] = wake
        try:
            return self._await(command_id, ref, len(others), wake, time.monotonic() + timeout_s)
        finally:
            with self._lock:
                self._wakes.pop(command_id, None)

    def _await(self, command_id: int, ref: str, others: int, wake: threading.Event,
               deadline: float) -> pb.ActionResult:
        while True:
            taken_by, declines, result = self.store.command_state(command_id)
            if result is not None:
                return pb.ActionResult.FromString(result)
            if not taken_by and declines >= others:
                raise NotFound(f"no connected sensor sees container {ref} (by id or name, on any collector)")
            left = deadline - time.monotonic()
            if left <= 0:
                where = f"through collector {taken_by}" if taken_by else "(no collector took it)"
                raise Unavailable(f"the sensor that sees container {ref} {where} did not confirm the action in time")
            wake.wait(min(left, POLL_S))
            wake.clear()

    # -- the others ask --------------------------------------------------------------------------
    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                import psycopg

                with psycopg.connect(self.store.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._step()  # what was left while this connection was down
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_S, stop_after=1):
                            self._woken(note.payload)
                        if time.monotonic() >= next_beat:
                            next_beat = time.monotonic() + HEARTBEAT_S
                            self._beat()
                        self._step()
            except Exception as err:  # noqa: BLE001 - the database went away: say so, try again
                log.warning("fleet listener: %s", str(err).splitlines()[0] if str(err) else type(err).__name__)
                self._stop.wait(POLL_S)

    def _beat(self) -> None:
        self.store.collector_alive(self.me, self.address, self.started_ns)
        if int(time.time()) % 60 < HEARTBEAT_S:  # about once a minute
            now = time.time_ns()
            self.store.prune_commands(now - int(KEEP_PUSHES_S * 1e9), now - int(KEEP_ACTIONS_S * 1e9))

    def _woken(self, payload: str) -> None:
        _, _, number = payload.partition(":")
        with self._lock:
            wake = self._wakes.get(int(number)) if number.isdigit() else None
        if wake is not None:
            wake.set()

    def _step(self) -> None:
        """Execute the commands other collectors left since the last step."""
        for command_id in self.store.command_ids_after(max(0, self._last_id - _LATE_WINDOW)):
            if command_id in self._seen:
                continue
            self._seen[command_id] = None
            if len(self._seen) > 4 * _LATE_WINDOW:
                del self._seen[next(iter(self._seen))]
            self._last_id = max(self._last_id, command_id)
            row = self.store.command(command_id)
            if row is None or row["origin"] == self.me:
                continue
            try:
                if row["kind"] == "push":
                    self.hub.send_local(pb.CollectorMessage.FromString(bytes(row["payload"])),
                                        row["except_sensor"] or "")
                elif row["kind"] == "action" and not row["taken_by"]:
                    self._act(row)
            except CollectorError as err:
                log.warning("fleet command %d from %s: %s", row["id"], row["origin"], err)

    def _act(self, row: dict[str, Any]) -> None:
        try:
            session, container_id = self.hub.route(row["target"] or "")
        except (NotFound, InvalidArgument):
            self.store.decline_command(row["id"])
            return
        if not self.store.take_command(row["id"], self.me):
            return  # another collector's sensor sees it too and claimed it first
        spec = json.loads(bytes(row["payload"]))
        request_id, pending = self.hub.request(session.sensor_id, row["actor"] or "")
        pending.command_id = row["id"]
        kind = cast("pb.ActionKind", int(spec["action"]))
        session.out.put(action_message(request_id, container_id, kind, row["actor"] or "",
                                       str(spec.get("reason", ""))))
