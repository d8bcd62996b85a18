"""Seeded fuzzing: every corrupted input must be accepted, skipped and counted, or refused with a
one-line error naming the file or field. `pytest tests/fuzz` prints the counts per kind."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

import pytest

TALLY: dict[str, Counter] = defaultdict(Counter)
MAX_SECONDS_PER_CASE = 10.0  # "no hang": the slowest case of any kind must finish well within this


class Fuzz:
    """Runs cases for one kind and records each outcome: accepted / skipped / error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def record(self, outcome: str, seconds: float = 0.0) -> None:
        assert seconds < MAX_SECONDS_PER_CASE, f"{self.kind}: a case took {seconds:.1f} s"
        TALLY[self.kind][outcome] += 1

    def error(self, exc: BaseException, *names: str) -> None:
        """A refused input: the message is one line and names the file or field."""
        msg = str(exc)
        assert "\n" not in msg.strip(), f"{self.kind}: multi-line error {msg!r}"
        assert any(n in msg for n in names), f"{self.kind}: error {msg!r} names none of {names}"
        self.record("error")

    def timed(self):
        return _Timer()


class _Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


@pytest.fixture
def fuzz(request):
    return lambda kind: Fuzz(kind)


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.write_sep("-", "fuzzing: cases per kind")
    terminalreporter.write_line(f"{'kind':<14}{'cases':>7}{'accepted':>10}{'skipped':>9}{'error':>7}")
    for kind in sorted(TALLY):
        c = TALLY[kind]
        terminalreporter.write_line(f"{kind:<14}{sum(c.values()):>7}{c['accepted']:>10}{c['skipped']:>9}{c['error']:>7}")


def corruptions(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """Named corrupted variants of `data`: truncations, byte flips, garbage, empty, header only."""
    n = len(data)
    out = [("empty", b""), ("header_only", data[: min(16, n)]), ("garbage", rng.randbytes(rng.randint(1, 4096)))]
    for _ in range(3):
        cut = rng.randint(1, max(1, n - 1))
        out.append((f"truncated_{cut}", data[:cut]))
    for _ in range(3):
        b = bytearray(data)
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(n)
            b[i] = rng.randrange(256)
        out.append(("flipped", bytes(b)))
    b = bytearray(data)
    start = rng.randrange(n)
    b[start : start + 64] = bytes(len(b[start : start + 64]))
    out.append(("zeroed_block", bytes(b)))
    out.append(("doubled", data + data))
    return out


@pytest.fixture
def corrupt():
    """corrupt(data, seed) -> [(name, bytes)]: seeded corrupted variants of `data`."""
    return lambda data, seed: corruptions(data, random.Random(seed))
