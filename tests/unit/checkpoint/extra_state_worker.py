"""One-process worker of test_te_extra_state.py: a local-spec checkpoint loaded into a model whose
final norm carries TE-style ``_extra_state`` (as ``te.pytorch.RMSNorm`` does under the TE spec)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.dist import model_sharded_state_dict
from megatron_lwz.checkpoint.state import TrainState, load_checkpoint, save_checkpoint
from megatron_lwz.config.schema import ParallelConfig
from tests.distributed.worker_ckpt_lib import make_trainer

FP8_META = torch.tensor([1, 2, 3], dtype=torch.uint8)


class TEStyleExtraState:
    """What a TE module adds: ``get/set_extra_state`` (FP8 metadata as a byte tensor, base.py:1354-1419)."""

    def get_extra_state(self):
        return FP8_META.clone()

    def set_extra_state(self, state):
        self.loaded_extra_state = state


def te_like(trainer):
    norm = trainer.unwrapped()[0].decoder.final_layernorm
    norm.__class__ = type("TEStyle" + type(norm).__name__, (TEStyleExtraState, type(norm)), {})
    sd = model_sharded_state_dict(trainer.unwrapped())["model"]
    assert type(sd["decoder.final_layernorm._extra_state"]).__name__ == "ShardedObject"  # megatron made it one
    return trainer


def weights(trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.unwrapped()[0].state_dict().items() if isinstance(v, torch.Tensor)
            and not k.endswith("_extra_state")}


def main(out: Path) -> None:
    parallel.init(ParallelConfig())
    parallel.destroy_model_parallel()
    local = make_trainer(1, seed=1)
    save_checkpoint(local, TrainState(step=1), out, config_dict={}, keep_last=1)
    want = weights(local)
    for weights_only in (False, True):
        parallel.destroy_model_parallel()
        te = te_like(make_trainer(1, seed=2 + weights_only))
        state = load_checkpoint(te, out, weights_only=weights_only)
        got = weights(te)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), weights_only
        assert state.step == (0 if weights_only else 1)
        assert not hasattr(te.unwrapped()[0].decoder.final_layernorm, "loaded_extra_state")  # fresh FP8 state
        print(f"LOADED weights_only={weights_only}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
