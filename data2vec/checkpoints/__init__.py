"""Checkpoints in and out: our safetensors folders (`pretrained`) and fairseq data2vec 2.0
imports (`fairseq`), through declarative key maps (`keymaps`) and a code-free unpickler
(`unpickle`)."""
