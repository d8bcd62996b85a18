"""data2vec shards SOURCE --out DIR [--samples-per-shard N] [--seed S] [--limit N]"""

from __future__ import annotations

import argparse
import json

from data2vec.data.shards import write_shards

HELP = "write WebDataset tar shards from an image folder, idx file, audio folder or .tsv manifest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="image folder, MNIST-format idx file, audio folder or fairseq .tsv manifest")
    p.add_argument("--out", required=True, help="folder for shard-NNNNNN.tar and index.json (must be empty)")
    p.add_argument("--samples-per-shard", type=int, default=1000,
                   help="samples per tar file (default 1000); aim for 100 MB-1 GB per shard and at least "
                        "ranks x data-loader workers shards")
    p.add_argument("--seed", type=int, default=0, help="seed of the write-time shuffle (default 0)")
    p.add_argument("--limit", type=int, default=0, help="only the first N samples of the source (0: all)")


def run(args: argparse.Namespace) -> int:
    index = write_shards(args.source, args.out, args.samples_per_shard, args.seed, args.limit)
    print(json.dumps({k: index[k] for k in ("kind", "samples", "skipped")} | {"shards": len(index["shards"])}))
    print(f"pretrain from them with data.path={args.out}")
    return 0
