"""How much of a checkpoint's targets is a function of where a token sits in its sequence.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/target_position.py runs/sp1000/checkpoints/last.pt \
        runs/speech/valid.tsv

data2vec regresses the teacher's top-K representation at masked positions. When those targets
become a function of the token's position alone (how far it is from the start and the end of
its sequence), the student can predict them from the edges it sees without knowing the content:
the regression loss falls and the features stop carrying content. This measures that share
(`data2vec.eval.position`: a least-squares fit from position features, the distance to the start
and to the end one-hot up to `--edge` tokens and the relative position in tenths, to the
targets, fitted on the first 80% of the inputs and scored, R^2, on the rest) for the EMA
teacher's targets and for the same architecture at random init.
Works for any single-modality checkpoint whose tokens form a sequence (speech, text).
"""

from __future__ import annotations

import argparse

import torch

from data2vec.checkpoints.load import load_model
from data2vec.eval.embed import extract, tokenizer_for
from data2vec.eval.features import FeatureSpec
from data2vec.eval.inputs import open_inputs
from data2vec.eval.position import position_share
from data2vec.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("inputs", help="a manifest, folder or text file of sequences (as `data2vec embed` reads)")
    ap.add_argument("--edge", type=int, default=24, help="distances to the edges one-hot up to this many tokens")
    ap.add_argument("--limit", type=int, default=200, help="use the first N inputs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-init model")
    a = ap.parse_args()
    teacher = load_model(a.checkpoint, "teacher")
    cfg = teacher.cfg
    torch.manual_seed(a.seed)
    nets = {"EMA teacher": teacher.model, "random init": build_model(cfg.model).eval()}
    inputs = open_inputs(a.inputs, cfg, tokenizer=tokenizer_for(cfg), limit=a.limit)
    for name, net in nets.items():
        emb = extract(net, cfg, inputs, FeatureSpec("top", "none"))
        targets = list(emb.features.split(emb.offsets.diff().tolist()))
        share = position_share(targets, a.edge)
        print(f"{name}: {100 * share:.1f}% of the target variance is explained by position "
              f"({len(targets)} sequences, {sum(map(len, targets))} tokens)")


if __name__ == "__main__":
    main()
