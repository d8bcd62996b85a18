"""data2vec tokenizer train --files ... --vocab-size N --out DIR"""

from data2vec.data.tokenizer import add_arguments, run  # noqa: F401

HELP = "train a byte-level BPE tokenizer on text files"
