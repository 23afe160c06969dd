"""PreemptionWatcher in one process (the multi-rank agreement is tested in
tests/distributed/test_checkpoint_signal.py)."""

from __future__ import annotations

import os
import signal

from megatron_lwz.checkpoint.signals import PreemptionWatcher


def test_signal_sets_stop_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGUSR1)
    with PreemptionWatcher() as watcher:
        assert not watcher.should_stop() and watcher.signal_received is None
        os.kill(os.getpid(), signal.SIGUSR1)  # would terminate the test process without the handler
        assert watcher.signal_received == signal.SIGUSR1 and watcher.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert watcher.signal_received == signal.SIGTERM
    assert signal.getsignal(signal.SIGUSR1) is before


def test_disabled_watcher_installs_nothing_but_honours_requests():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatcher(enabled=False) as watcher:
        assert signal.getsignal(signal.SIGTERM) is before
        assert not watcher.should_stop()
        watcher.request_stop()
        assert watcher.should_stop() and watcher.signal_received is None


def test_custom_signal_set():
    with PreemptionWatcher(signals=[signal.SIGUSR2]) as watcher:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert watcher.should_stop()
