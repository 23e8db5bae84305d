"""Train a Conductor: the same as `baton train conductor`, runnable under `accelerate launch`.

    python scripts/train_conductor.py --config configs/conductor/demo.yaml --out outputs/conductor-demo
    accelerate launch --num_processes 2 scripts/train_conductor.py --config configs/conductor/paper.yaml
"""

from __future__ import annotations

import sys

from routers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "conductor", *sys.argv[1:]]))
