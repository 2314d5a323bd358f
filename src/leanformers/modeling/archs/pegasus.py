"""Pegasus: Marian's fixed sinusoidal positions and final_logits_bias with pre-norm layers and final LayerNorms."""
import dataclasses

from .marian import SPEC as MARIAN

SPEC = dataclasses.replace(MARIAN, model_type="pegasus", class_prefix="Pegasus", class_names={},
                           pre_norm=True, final_norm=True)
