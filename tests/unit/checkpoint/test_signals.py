"""PreemptionWatcher in one process (the multi-rank agreement is tested in
tests/distributed/test_checkpoint_signal.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

from megatron_lwz.checkpoint.signals import PreemptionWatcher, shield_children


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


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def _wait(proc, seconds: float = 10.0):
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def test_shielded_children_survive_sigusr1_and_the_parent_gets_it_afterwards():
    with PreemptionWatcher() as watcher:
        with shield_children():
            shielded = _sleeper()  # fork + exec, like vLLM's engine-core / worker processes
            spawned = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))
            spawned.start()
            os.kill(os.getpid(), signal.SIGUSR1)  # meant for the trainer: pending, not lost
            assert watcher.signal_received is None
        assert watcher.signal_received == signal.SIGUSR1
        plain = _sleeper()
        time.sleep(1.0)  # let the interpreters start (the default action would kill them at once)
        for proc in (shielded, plain):
            proc.send_signal(signal.SIGUSR1)
        os.kill(spawned.pid, signal.SIGUSR1)
        assert _wait(plain) == -signal.SIGUSR1  # control: an unshielded child dies of it
        assert _wait(shielded, 1.0) is None and spawned.is_alive()
        for proc in (shielded, plain):
            proc.kill()
            proc.wait()
        spawned.kill()
        spawned.join()
