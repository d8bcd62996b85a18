"""Text recipes: fairseq's data2vec 2.0 GLUE fine-tuning configs (reference 3.3) and small CPU
recipes that learn from a few hundred sentences."""

from __future__ import annotations

from data2vec.recipes import register_recipe
from data2vec.train.finetune_config import FinetuneConfig, FinetuneModelConfig, FinetuneTrainConfig
from data2vec.train.finetune_text import TextLabeledData

# task: (batch, updates, warm-up updates, lr, selection metric) from the fairseq configs, and
# the text/label columns of the GLUE distribution's TSV files (CoLA's have no header line).
GLUE = {
    "mnli": (32, 123_873, 7_432, 2e-5, "accuracy", ("sentence1", "sentence2"), "gold_label", True),
    "qnli": (32, 33_112, 1_986, 2e-5, "accuracy", ("question", "sentence"), "label", True),
    "qqp": (32, 113_272, 28_318, 2e-5, "accuracy", ("question1", "question2"), "is_duplicate", True),
    "sst_2": (32, 20_935, 1_256, 2e-5, "accuracy", ("sentence",), "label", True),
    "cola": (16, 5_336, 320, 2e-5, "mcc", ("3",), "1", False),
    "mrpc": (16, 2_296, 137, 2e-5, "accuracy", ("#1 String", "#2 String"), "Quality", True),
    "rte": (16, 2_036, 122, 2e-5, "accuracy", ("sentence1", "sentence2"), "label", True),
    "sts_b": (16, 3_598, 214, 4e-5, "pearson_spearman", ("sentence1", "sentence2"), "score", True),
}


def glue(task: str) -> FinetuneConfig:
    """config/v2/text_finetuning/<task>.yaml: Adam (0.9, 0.98), eps 1e-6, weight decay 0.1,
    linear warm-up then decay to 0, no clipping, first-token head, evaluation per epoch."""
    batch, updates, warmup, lr, metric, columns, label, header = GLUE[task]
    return FinetuneConfig(
        task="sentence", preset="data2vec2_text_base",
        data=TextLabeledData(text_columns=columns, label_column=label, header=header, regression=task == "sts_b",
                             max_len=512),
        train=FinetuneTrainConfig(lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1, schedule="linear",
                                  warmup_frac=warmup / updates, max_steps=updates, batch_size=batch,
                                  log_every=100, select_metric=metric),
    )


for _name in GLUE:
    register_recipe(f"glue_{_name}", f"data2vec 2.0 GLUE {_name.upper().replace('_', '-')} (fairseq text_finetuning)")(
        lambda name=_name: glue(name))


def _small(task: str, lr: float, epochs: int) -> FinetuneConfig:
    # Small models and a few hundred examples need a far higher lr than RoBERTa-base GLUE
    # values (2e-5 never moves a 2-block encoder off ln(classes)), a short warm-up and more epochs.
    return FinetuneConfig(
        task=task, preset="data2vec2_text_fortunes",
        model=FinetuneModelConfig(head_dropout=0.1),
        data=TextLabeledData(max_len=128),
        train=FinetuneTrainConfig(lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, schedule="linear",
                                  warmup_frac=0.06, epochs=epochs, batch_size=16, clip_norm=1.0, log_every=10),
    )


@register_recipe("sentence_small", "sentence(-pair) classification for small text models, a few hundred examples, CPU")
def sentence_small() -> FinetuneConfig:
    return _small("sentence", 5e-4, 10)


@register_recipe("token_small", "token classification for small text models, a few hundred sentences, CPU")
def token_small() -> FinetuneConfig:
    return _small("token", 1e-3, 10)
