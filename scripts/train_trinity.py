"""Train TRINITY from a config; the same arguments as `baton train trinity`.

    python scripts/train_trinity.py --config configs/trinity/route.yaml --train ../shared/data/llmrouter --out outputs/r
    accelerate launch --multi_gpu --num_processes 2 scripts/train_trinity.py --config ... --out ...   # population sharded over 2 processes (CPU too)
"""

import sys

from routers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "trinity", *sys.argv[1:]]))
