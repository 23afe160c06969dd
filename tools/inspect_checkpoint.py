"""Print what a checkpoint directory holds: the marker, every checkpoint, its metadata and tensors.

Usage: ``python tools/inspect_checkpoint.py SAVE_OR_CKPT_DIR [--tensors]``. Without ``--tensors``
only JSON metadata is read (no torch import).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_lwz.checkpoint import layout  # noqa: E402  (stdlib only)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="save directory or one checkpoint directory")
    parser.add_argument("--tensors", action="store_true", help="also list the stored model tensors (imports torch)")
    args = parser.parse_args(argv)
    root = layout.Path(args.path)
    latest = layout.latest_checkpoint(root)
    if latest is None:
        print(f"{root}: no complete checkpoint", file=sys.stderr)
        return 1
    marker = layout.read_marker(root) if not layout.is_complete(root) else None
    print(f"latest: {latest}" + (f"   (marker -> {marker.name})" if marker else ""))
    for path in layout.list_checkpoints(root) or [latest]:
        print(json.dumps(layout.describe(path)))
    if args.tensors:
        from megatron_lwz.checkpoint.dist import McoreCheckpointReader

        reader = McoreCheckpointReader(latest)
        for key in reader.keys():
            print(f"  {key:70s} {reader.shape(key)} {reader.dtype_of(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
