"""Synthesize a small real spoken corpus offline with espeak-ng, in fairseq manifest layout.

Utterances are digit strings (spoken as words), single words and short sentences, read by many
English voices and voice variants at varied speed and pitch. Valid and test speakers are held
out: their voices (when at least three are installed) and their variants never occur in train.

Output in ``out_dir``: ``wav/*.wav`` (22.05 kHz as espeak writes them; loading resamples),
``{train,valid,test}.tsv`` manifests (lengths in 16 kHz samples), line-aligned ``.ltr``
(letters, ``|`` between words) and ``.wrd`` (uppercase words) transcripts, and ``speakers.tsv``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from data2vec.data.audio import resampled_length, write_manifest

__all__ = [
    "SPLITS",
    "KINDS",
    "Utterance",
    "discover_voices",
    "discover_variants",
    "words_to_letters",
    "synthesize_corpus",
    "add_arguments",
    "run",
    "main",
]

SPLITS = ("train", "valid", "test")

KIND_WEIGHTS = {"digits": 0.3, "word": 0.3, "sentence": 0.4}  # the default mix of texts
KINDS = tuple(KIND_WEIGHTS)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

WORDS = (
    "apple", "river", "garden", "yellow", "window", "market", "silver", "thunder", "pencil",
    "forest", "candle", "winter", "summer", "bridge", "rabbit", "mountain", "orange", "kitchen",
    "doctor", "letter", "planet", "basket", "monkey", "guitar", "butter", "island", "engine",
    "carpet", "ticket", "button", "hammer", "jacket", "ladder", "magnet", "needle", "pocket",
    "rocket", "saddle", "tunnel", "violin", "wagon", "zebra", "cloud", "stone", "green", "quick",
    "light", "sugar", "music", "water", "paper", "table", "chair", "horse", "beach", "storm",
    "dream", "smile", "voice", "train", "north", "south", "east", "west", "left", "right",
    "yes", "no", "stop", "go", "up", "down", "on", "off",
)

SENTENCES = (
    "the cat sat on the warm mat", "she opened the window to let in the air",
    "we walked along the quiet river", "the train leaves early in the morning",
    "please close the door behind you", "he painted the fence bright blue",
    "the children played in the park", "my brother likes to read old books",
    "the soup is too hot to eat", "a small bird sang in the tree",
    "they built a house near the lake", "the sun rose over the hills",
    "turn left at the next corner", "the dog barked at the mailman",
    "i left my keys on the table", "the rain stopped before noon",
    "she bought fresh bread at the market", "the baby slept through the night",
    "we need more paper for the printer", "the old man told a long story",
    "the wind blew the leaves away", "he forgot to water the plants",
    "the museum opens at nine", "our team won the final game",
    "the coffee smells very good", "she wrote a letter to her friend",
    "the boat drifted slowly to shore", "the lights went out during the storm",
    "he fixed the bike with a wrench", "the teacher asked a hard question",
    "we had pizza for dinner", "the phone rang three times",
    "the river flows to the sea", "the farmer planted corn in spring",
    "she wore a red coat in the snow", "the clock on the wall is slow",
    "they sang songs around the fire", "the milk is in the fridge",
    "a green frog jumped into the pond", "the plane landed on time",
    "he keeps his tools in the garage", "the store closes at six",
    "the moon was bright last night", "my sister plays the piano",
    "the road was wet and dark", "we watched the birds fly south",
    "the cake needs twenty minutes more", "she found a coin on the street",
    "the bus was full this morning", "he washed the dishes after lunch",
    "the flowers bloom in may", "the library is very quiet",
    "they painted the kitchen yellow", "the horse ran across the field",
    "i like tea with honey", "the ship sailed across the ocean",
    "the kids built a snowman", "she locked the gate at night",
    "the printer is out of ink", "the apples fell from the tree",
    "he lost his hat in the wind", "the meeting starts after lunch",
    "we planted a tree in the yard", "the fish swam under the bridge",
    "the oven is still warm", "she called her mother on sunday",
    "the path leads to the old mill", "the shop sells fresh fruit",
    "he carried the box up the stairs", "the stars shine above the town",
    "the grass is wet with dew", "we crossed the street with care",
    "the car would not start today", "she sent the package by mail",
    "the lamp is next to the bed", "the mountain is covered with snow",
    "he drinks water every hour", "the train was late again",
    "the girl drew a picture of a horse", "our neighbor has a large dog",
    "the door creaked as it opened", "the bread is on the shelf",
    "they walked home in the rain", "the boy kicked the ball far",
    "she tied her shoes and ran", "the window faces the garden",
    "the soup needs a little salt", "he read the news aloud",
    "the bell rang at noon", "we stayed inside all day",
    "the cat chased a small mouse", "the road bends near the farm",
    "she packed a bag for the trip", "the radio played soft music",
    "the leaves turn red in autumn", "he waited for the green light",
    "the kettle is boiling now", "the boat has a white sail",
    "we heard thunder in the distance", "the pen ran out of ink",
    "the pilot spoke to the crowd", "the children learned a new song",
    "a cold wind came from the north", "the key fits the old lock",
    "she smiled and waved goodbye", "the hotel is near the station",
)

# Voices of espeak-ng's own English set, for installations whose listing cannot be parsed.
FALLBACK_VOICES = (
    "en-029", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp",
    "en-us", "en-us-nyc",
)
FALLBACK_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt2",
    "klatt3", "klatt4", "croak", "whisper", "Alex", "Annie", "Andy", "Storm", "Tweaky", "max",
)


@dataclass(frozen=True)
class Utterance:
    """One planned (and, once synthesized, measured) utterance; ``num_samples`` is at 16 kHz."""

    file: str
    split: str
    voice: str
    variant: str
    speed: int
    pitch: int
    kind: str
    words: str
    num_samples: int = 0

    @property
    def speaker(self) -> str:
        return f"{self.voice}+{self.variant}"


def _espeak_listing(espeak: str, which: str) -> list[list[str]]:
    try:
        out = subprocess.run(
            [espeak, f"--voices={which}"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split() for line in out.splitlines()[1:] if len(line.split()) >= 5]


def discover_voices(espeak: str = "espeak-ng") -> list[str]:
    """Installed English voices (language codes), sorted; MBROLA voices are skipped."""
    # MBROLA voices ("mb/..." files) need a separate binary and voice data; without them espeak
    # prints an error yet exits 0, so they are never used. The English listing also shows
    # variants that declare English ("!v/..." files); those are not voices.
    voices = {
        row[1] for row in _espeak_listing(espeak, "en")
        if row[1].startswith("en") and not row[4].startswith(("mb/", "!v/"))
    }
    return sorted(voices) or list(FALLBACK_VOICES)


def discover_variants(espeak: str = "espeak-ng") -> list[str]:
    """Installed voice variants (the names used after ``+`` in ``-v``), sorted."""
    names = {row[4].split("/", 1)[-1] for row in _espeak_listing(espeak, "variant")}
    return sorted(names) or list(FALLBACK_VARIANTS)


def words_to_letters(words: str) -> str:
    """fairseq letter transcript: ``"AB CD"`` -> ``"A B | C D |"``."""
    return " ".join(words.replace(" ", "|")) + " |"


def _normalize_words(text: str) -> str:
    return " ".join(re.sub(r"[^A-Z' ]+", " ", text.upper()).split())


def _split_counts(total: int, valid_fraction: float, test_fraction: float) -> dict[str, int]:
    # Held-out splits get at least one member whenever their fraction is positive.
    n_valid = max(1, round(total * valid_fraction)) if valid_fraction > 0 else 0
    n_test = max(1, round(total * test_fraction)) if test_fraction > 0 else 0
    n_train = total - n_valid - n_test
    if n_train < 1:
        raise ValueError(
            f"{total} items cannot fill train plus valid={valid_fraction} and test={test_fraction}"
        )
    return {"train": n_train, "valid": n_valid, "test": n_test}


def _speaker_pools(
    voices: Sequence[str], variants: Sequence[str], fractions: tuple[float, float],
    rng: np.random.Generator,
) -> dict[str, list[tuple[str, str]]]:
    """Voice x variant pairs per split; every axis with >= 3 entries is split disjointly."""
    per_axis = []
    for names in (sorted(voices), sorted(variants)):
        names = [names[i] for i in rng.permutation(len(names))]
        if len(names) >= 3:
            counts = _split_counts(len(names), *fractions)
            n_train, n_valid = counts["train"], counts["valid"]
            per_axis.append({
                "train": names[:n_train],
                "valid": names[n_train : n_train + n_valid],
                "test": names[n_train + n_valid :],
            })
        else:
            per_axis.append({s: names for s in SPLITS})
    if len(variants) < 3 and len(voices) < 3:
        raise ValueError("need at least 3 voices or 3 variants to hold out speakers")
    return {s: list(itertools.product(per_axis[0][s], per_axis[1][s])) for s in SPLITS}


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds: got {list(kinds)}, choose one or more of {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in kinds)


def _kind_probabilities(kinds: Sequence[str]) -> np.ndarray:
    # The mix's weights renormalized over the chosen kinds; with all three the draws are those of
    # corpora written before kinds could be chosen, so a seed still gives the same corpus.
    weights = np.array([KIND_WEIGHTS[k] for k in kinds])
    return weights / weights.sum()


def _draw_text(rng: np.random.Generator, kinds: Sequence[str], p: np.ndarray) -> tuple[str, str]:
    kind = kinds[rng.choice(len(kinds), p=p)]
    if kind == "digits":
        spoken = " ".join(DIGIT_WORDS[d] for d in rng.integers(0, 10, size=rng.integers(1, 7)))
    elif kind == "word":
        spoken = WORDS[rng.integers(len(WORDS))]
    else:
        spoken = SENTENCES[rng.integers(len(SENTENCES))]
    return kind, spoken


def plan_corpus(
    num_utterances: int, seed: int, voices: Sequence[str], variants: Sequence[str],
    valid_fraction: float = 0.1, test_fraction: float = 0.1,
    speed_range: tuple[int, int] = (120, 200), pitch_range: tuple[int, int] = (25, 75),
    kinds: Sequence[str] = KINDS,
) -> list[Utterance]:
    """Deterministically choose split, speaker, speed, pitch and text for every utterance.

    ``kinds`` (a subset of ``KINDS``) restricts the texts, e.g. ``("digits",)`` for a ten-word
    vocabulary; the held-out voices and variants do not depend on it.
    """
    kinds = _check_kinds(kinds)
    p_kind = _kind_probabilities(kinds)
    rng = np.random.default_rng(seed)
    pools = _speaker_pools(voices, variants, (valid_fraction, test_fraction), rng)
    counts = _split_counts(num_utterances, valid_fraction, test_fraction)
    labels = [s for s in SPLITS for _ in range(counts[s])]
    labels = [labels[i] for i in rng.permutation(num_utterances)]
    plan = []
    for i, split in enumerate(labels):
        voice, variant = pools[split][rng.integers(len(pools[split]))]
        kind, spoken = _draw_text(rng, kinds, p_kind)
        plan.append(Utterance(
            file=f"utt{i:06d}.wav", split=split, voice=voice, variant=variant,
            speed=int(rng.integers(speed_range[0], speed_range[1] + 1)),
            pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
            kind=kind, words=_normalize_words(spoken),
        ))
    return plan


def _synthesize_one(espeak: str, wav_dir: Path, utt: Utterance) -> Utterance:
    path = wav_dir / utt.file
    cmd = [espeak, "-w", str(path), "-v", utt.speaker, "-s", str(utt.speed), "-p", str(utt.pitch),
           utt.words.lower()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not path.is_file():
        raise RuntimeError(
            f"espeak-ng failed ({proc.returncode}) for {path}: {proc.stderr.strip()}"
        )
    info = sf.info(str(path))
    if info.frames == 0:
        raise RuntimeError(f"espeak-ng wrote an empty file {path} with voice {utt.speaker}")
    return replace(utt, num_samples=resampled_length(info.frames, info.samplerate))


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    wav_dir = out_dir / "wav"
    existing = sorted(wav_dir.glob("*.wav")) if wav_dir.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(f"{wav_dir} already holds {len(existing)} wav files (use overwrite)")
    for path in existing:
        path.unlink()
    wav_dir.mkdir(parents=True, exist_ok=True)
    return wav_dir


def _write_outputs(out_dir: Path, wav_dir: Path, utterances: Sequence[Utterance]) -> None:
    for split in SPLITS:
        rows = [u for u in utterances if u.split == split]
        write_manifest(out_dir / f"{split}.tsv", wav_dir, [(u.file, u.num_samples) for u in rows])
        (out_dir / f"{split}.wrd").write_text("".join(u.words + "\n" for u in rows))
        letters = "".join(words_to_letters(u.words) + "\n" for u in rows)
        (out_dir / f"{split}.ltr").write_text(letters)
    header = "file\tsplit\tvoice\tvariant\tspeed\tpitch\tkind\n"
    body = "".join(
        f"{u.file}\t{u.split}\t{u.voice}\t{u.variant}\t{u.speed}\t{u.pitch}\t{u.kind}\n"
        for u in utterances
    )
    (out_dir / "speakers.tsv").write_text(header + body)


def read_speakers(corpus_dir: str | Path, column: str) -> dict[str, str]:
    """``column`` of ``speakers.tsv`` (voice, variant, kind, ...) for every audio file name of a corpus."""
    path = Path(corpus_dir) / "speakers.tsv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if reader.fieldnames is None or "file" not in reader.fieldnames or column not in reader.fieldnames:
            raise ValueError(f"{path}: needs the columns 'file' and {column!r}, found {reader.fieldnames}")
        return {row["file"]: row[column] for row in reader}


def synthesize_corpus(
    out_dir: str | Path,
    num_utterances: int,
    seed: int = 0,
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    voices: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    num_workers: int = 2,
    espeak: str = "espeak-ng",
    overwrite: bool = False,
    kinds: Sequence[str] = KINDS,
) -> list[Utterance]:
    """Synthesize ``num_utterances`` utterances into ``out_dir``; returns them with lengths.

    Deterministic given ``seed`` and the installed espeak-ng. The speaker split depends on the seed
    and the voices only, so a larger corpus of the same seed (more unlabeled audio to pretrain on)
    holds out the same validation and test speakers. ``voices``/``variants`` default to
    everything the installed espeak-ng lists; ``kinds`` restricts the texts (``plan_corpus``).
    ``num_workers`` espeak-ng processes run at once (threads only wait on them, so no Python
    worker processes are needed).
    """
    binary = shutil.which(espeak)
    if binary is None:
        raise FileNotFoundError(
            f"{espeak} not found; install it (Debian: apt-get install espeak-ng)"
        )
    out_dir = Path(out_dir)
    voices = list(voices) if voices else discover_voices(binary)
    variants = list(variants) if variants else discover_variants(binary)
    plan = plan_corpus(
        num_utterances, seed, voices, variants, valid_fraction, test_fraction, kinds=kinds
    )
    wav_dir = _prepare_out_dir(out_dir, overwrite)
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        done = list(pool.map(lambda utt: _synthesize_one(binary, wav_dir, utt), plan))
    _write_outputs(out_dir, wav_dir, done)
    return done


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``speech-corpus`` CLI verb."""
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--num", type=int, default=1000, help="number of utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at once")
    parser.add_argument("--voices", help="comma-separated espeak-ng voices (default: all English)")
    parser.add_argument("--variants", help="comma-separated voice variants (default: all)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS),
        help=f"comma-separated kinds of text (default: all of {','.join(KINDS)}; digits alone "
        "is a ten-word vocabulary)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing corpus")


def run(args: argparse.Namespace) -> int:
    """Run the ``speech-corpus`` verb from parsed arguments; prints a summary, returns 0."""
    utterances = synthesize_corpus(
        args.out, args.num, args.seed,
        valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
        voices=args.voices.split(",") if args.voices else None,
        variants=args.variants.split(",") if args.variants else None,
        num_workers=args.workers, overwrite=args.force, kinds=args.kinds.split(","),
    )
    for split in SPLITS:
        rows = [u for u in utterances if u.split == split]
        seconds = sum(u.num_samples for u in rows) / 16000
        speakers = len({u.speaker for u in rows})
        print(f"{split}: {len(rows)} utterances, {seconds / 60:.1f} min, {speakers} speakers")
    print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m data2vec.data.speech_corpus --out DIR --num N``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
