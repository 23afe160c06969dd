"""``lwz --help`` lists every subcommand without importing the heavy stack."""

from __future__ import annotations

import subprocess
import sys

from megatron_lwz.cli.main import COMMANDS


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in {n.split()[0] for n in COMMANDS}:
        assert name in out, f"{name} missing from lwz --help"
    sub = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "convert", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "hf-to-mcore" in sub and "mcore-to-hf" in sub


def test_job_help_shows_overrides():
    out = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "pretrain", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--config" in out and "overrides" in out


def test_bad_override_exits_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "pretrain", "optim.lrr=1"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "did you mean 'lr'" in out.stderr
