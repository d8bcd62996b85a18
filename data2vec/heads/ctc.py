"""Speech recognition with CTC: letter vocabulary, the CTC head and loss, greedy decoding,
and word/character error rates (reference section 3.2: CTC on letters, `|` between words)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLANK = "<blank>"
WORD_SEP = "|"


def letters_from_words(words: str) -> list[str]:
    """"AB CD" -> ["A", "B", "|", "C", "D", "|"] (fairseq .ltr tokens)."""
    return list(" ".join(words.split()).replace(" ", WORD_SEP)) + [WORD_SEP] if words.strip() else []


def words_from_letters(tokens: Sequence[str]) -> str:
    """["A", "B", "|", "C", "|"] -> "AB C"."""
    return " ".join("".join(tokens).replace(WORD_SEP, " ").split())


@dataclass(frozen=True)
class Vocabulary:
    """Letter symbols; index 0 is the CTC blank."""

    symbols: tuple[str, ...]

    @classmethod
    def from_transcripts(cls, transcripts: Sequence[Sequence[str]]) -> "Vocabulary":
        """Every letter token seen in the (tokenized) transcripts, sorted, after the blank."""
        seen = sorted({t for line in transcripts for t in line})
        return cls((BLANK, *seen))

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, tokens: Sequence[str], where: str = "transcript") -> list[int]:
        index = {s: i for i, s in enumerate(self.symbols)}
        unknown = sorted({t for t in tokens if t not in index})
        if unknown:
            raise ValueError(f"{where}: letters {unknown} are not in the vocabulary {list(self.symbols[1:])}")
        return [index[t] for t in tokens]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids (blanks already removed) -> words."""
        return words_from_letters([self.symbols[i] for i in ids])


class CTCHead(nn.Module):
    """Dropout + Linear from encoder width to the vocabulary (fairseq `w2v_encoder.proj`)."""

    def __init__(self, dim: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, vocab_size)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, T, D) frames (speech has no extra tokens) -> logits (B, T, V)."""
        return self.proj(self.dropout(x))


def frame_lengths(logits: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """(B,) number of real frames."""
    B, T = logits.shape[:2]
    if padding_mask is None:
        return torch.full((B,), T, dtype=torch.long, device=logits.device)
    return (~padding_mask).sum(1).long()


def ctc_loss(logits: Tensor, padding_mask: Optional[Tensor], targets: list[list[int]]) -> Tensor:
    """CTC loss summed over a sample's frames, averaged over the batch.

    Args:
        logits: (B, T, V); padding_mask: (B, T) True = padding; targets: B id lists (no blanks).
    Returns: scalar. Impossible alignments (target longer than the input) give 0, not inf.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=logits.device)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long, device=logits.device)
    loss = F.ctc_loss(log_probs, flat, frame_lengths(logits, padding_mask), target_lengths,
                      blank=0, reduction="sum", zero_infinity=True)
    return loss / max(1, len(targets))


def greedy_decode(logits: Tensor, padding_mask: Optional[Tensor] = None) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks. logits (B, T, V) -> B id lists."""
    best = logits.argmax(-1).cpu()  # (B, T)
    lengths = frame_lengths(logits, padding_mask).cpu()
    out = []
    for row, n in zip(best, lengths):
        path = row[: int(n)].tolist()
        out.append([t for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])])
    return out


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (one-row dynamic programme)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rates(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER in percent: total edits / total reference words (characters), and
    `length`: the hypotheses' characters in percent of the references'.

    Characters include the spaces between words.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    w_err = sum(edit_distance(h.split(), r.split()) for h, r in zip(hypotheses, references))
    c_err = sum(edit_distance(" ".join(h.split()), " ".join(r.split())) for h, r in zip(hypotheses, references))
    n_w = sum(len(r.split()) for r in references)
    n_c = sum(len(" ".join(r.split())) for r in references)
    n_h = sum(len(" ".join(h.split())) for h in hypotheses)
    return {"wer": 100.0 * w_err / max(1, n_w), "cer": 100.0 * c_err / max(1, n_c), "length": 100.0 * n_h / max(1, n_c)}


# Below this output length (percent of the references' characters) the head emits mostly blanks.
PLATEAU_LENGTH = 30.0
# Evaluations in a row on the plateau before it is worth a warning: the first one or two
# evaluations of a healthy run often sit there too.
PLATEAU_EVALS = 3


def blank_plateau_hint(lengths: Sequence[float]) -> Optional[str]:
    """A warning when the last `PLATEAU_EVALS` validation outputs were mostly empty, else None.

    `lengths`: the `length` of every validation evaluation so far (`error_rates`), oldest first;
    the fine-tuning loop passes those after the lr warm-up only.
    Early in CTC training the cheapest output is all blanks; small models can sit on that
    plateau for hundreds of updates before they start to spell (on the speech corpus one seed
    of `ctc_small`, then 800 updates long, stayed there until update 400 and ended 6 CER points
    behind the others, while healthy runs left it by update 200 or 300).
    """
    recent = list(lengths)[-PLATEAU_EVALS:]
    if len(recent) < PLATEAU_EVALS or max(recent) >= PLATEAU_LENGTH:
        return None
    return (f"for {PLATEAU_EVALS} evaluations the transcripts held under {PLATEAU_LENGTH:.0f}% of the reference "
            f"characters ({recent[-1]:.0f}% now): the CTC head still emits mostly blanks; if this lasts to the end, "
            "give more updates (train.max_steps) or a higher train.lr")
