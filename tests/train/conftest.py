import pytest

from data2vec.train.finetune import Finetuner
from data2vec.train.finetune_run import run_finetune


@pytest.fixture
def interrupted_finetune(monkeypatch):
    """run(cfg, out, n): a fine-tuning run in `out` killed (KeyboardInterrupt) as its n-th update starts."""
    def run(cfg, out, n: int) -> None:
        original, calls = Finetuner.train_step, []

        def crash_at_n(self, batches):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(self, batches)

        monkeypatch.setattr(Finetuner, "train_step", crash_at_n)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(cfg, out, progress=False)
        monkeypatch.setattr(Finetuner, "train_step", original)
    return run
