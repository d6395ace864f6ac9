"""Watches the rules directory and asks the daemon to reload, once per save.

The directory is watched, not the files: editors save by writing a temporary
file and renaming it over the old one (gedit's `.goutputstream-XYZ`), or by
renaming the old file away and writing a new one (vim), and a watch on the
old file would follow it away. Every event on a YAML file restarts a short
quiet period; when it ends, `on_change` is called once (debounce), so the
several events of one save give one reload, and a reader never catches the
file between truncate and write unless the editor pauses for longer than the
quiet period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.5
_RULE_SUFFIXES = (".yaml", ".yml")


class RulesWatcher(FileSystemEventHandler):
    def __init__(
        self,
        directory: Path,
        on_change: Callable[[], None],
        debounce_s: float = DEBOUNCE_S,
    ) -> None:
        self.directory = directory
        self.on_change = on_change
        self.debounce_s = debounce_s
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._observer = Observer()

    def start(self) -> None:
        self._observer.schedule(self, str(self.directory), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stops the watcher thread and waits for it, but never for long."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self._observer.stop()
        self._observer.join(timeout_s)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if not any(str(p).endswith(_RULE_SUFFIXES) for p in paths if p):
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_s, self.on_change)
            self._timer.daemon = True
            self._timer.start()
