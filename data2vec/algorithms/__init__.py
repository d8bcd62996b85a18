"""The self-supervised objectives: targets, losses, the EMA teacher and the models."""
