"""Checkpoints in and out, through declarative key maps and a code-free unpickler:

- `load`: one loader for every format, detected by content: `load_model` (a ready model),
  `read_checkpoint` / `read_weights` (the states), `sniff` / `detect_format`.
- `imported`: `Imported`, what reading a checkpoint returns (config, states, head, dropped keys).
- `pretrained`: our safetensors checkpoint folders, written and read.
- `fairseq`: fairseq data2vec 2.0 `data2vec_multi` imports (`import_fairseq`) and their config tables.
- `fairseq_v1`: Meta checkpoint files in (`import_checkpoint`, dispatch by kind) and out (`export_fairseq`).
- `fairseq_common`: helpers shared by the readers and writers below (key dropping, q/k/v, config checks).
- `fairseq_audio_v1`: data2vec 1.0 speech (`data2vec_audio`) and the `wav2vec_ctc` fine-tuned wrapper.
- `fairseq_text_v1`: data2vec 1.0 text (`data2vec_text`, RoBERTa-style) and its classification heads.
- `beit`: BEiT-repository `.pth` files of 1.0 vision, pretrained and fine-tuned.
- `fairseq_v2_finetuned`: 2.0 fine-tuned classifiers in, and every 2.0 fairseq layout out.
- `huggingface`: Hugging Face transformers Data2Vec* folders in and out (1.0 models).
- `hf_keymaps`: key maps between transformers' Data2Vec* state dicts and ours.
- `keymaps`: declarative key maps between fairseq and our module names.
- `unpickle`: the restricted, code-free unpickler for torch checkpoint files.
"""
