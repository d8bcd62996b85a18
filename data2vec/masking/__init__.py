"""Mask generators (pure functions). Convention: a bool mask with True = masked."""

from data2vec.masking.common import MaskInfo, gather_tokens, make_mask_info, restore_tokens

__all__ = ["MaskInfo", "gather_tokens", "make_mask_info", "restore_tokens"]
