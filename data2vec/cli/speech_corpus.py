"""data2vec speech-corpus --out DIR --num N: synthesize a spoken corpus with espeak-ng."""

from data2vec.data.speech_corpus import add_arguments, run  # noqa: F401

HELP = "synthesize a spoken corpus (audio, manifests, transcripts) with espeak-ng"
