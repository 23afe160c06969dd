"""Ablation studies (``lwz ablate``): variants × seeds of an `lwz` job from a YAML study, and a report
with intervals over seeds and paired tests. spec.py (the YAML format), runner.py (processes, resume),
collect.py (per-prompt held-out scores), stats.py (t / sign-flip tests), report.py (table, plots)."""
