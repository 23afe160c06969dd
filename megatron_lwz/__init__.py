"""megatron_lwz: LongWriter-Zero (ultra-long writing by pure RL) on megatron-core.

Importing this package is cheap: it must not import torch.distributed, megatron or vllm
(checked by ``tests/unit/test_import_boundaries.py``).
"""

__version__ = "0.1.0"
