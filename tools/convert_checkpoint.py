"""HF Qwen2 ⇄ megatron dist-checkpoint conversion; the same as ``lwz convert ...``.

Usage::

    python tools/convert_checkpoint.py hf-to-mcore --hf HF_DIR --out CKPT_DIR --tp 2 --pp 2 [--dtype bf16] [--verify]
    python tools/convert_checkpoint.py mcore-to-hf --ckpt CKPT_DIR --out HF_DIR [--dtype bf16] [--verify]
    torchrun --nproc_per_node 4 tools/convert_checkpoint.py hf-to-mcore ... --tp 2 --pp 2   # one shard per rank
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_lwz.cli.main import main  # noqa: E402  (thin: no torch / megatron at import time)

if __name__ == "__main__":  # required: dist_checkpointing may start spawn-context helpers
    sys.exit(main(["convert", *sys.argv[1:]]))
