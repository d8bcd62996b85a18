"""Fine-tuning heads: small modules put on top of a pretrained encoder."""
