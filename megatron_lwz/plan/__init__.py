"""``lwz plan``: layout search with a memory model (Korthikanti et al. 2022) and a step-time model
(FLOPs + communication), calibratable against measured per-GPU memory. Pure Python, no torch."""
