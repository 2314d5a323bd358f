"""Fresh weights as transformers initialises them (its `_init_weights`): Linear and Embedding weights normal(0, std)
with std = config.initializer_range (init_std for BART-family / ProphetNet), biases zero, norms 1/0, an embedding's
padding row zero; a spec's `init_std` rule gives the per-parameter std where an architecture differs (GPT-2's scaled
residual projections, T5's factors)."""
from __future__ import annotations

import threading

import torch
from torch import nn

from .layers import RMSNorm

_BUILDING = threading.local()  # depth of PreTrainedModel constructors running (only the outermost initialises)


def default_std(config) -> float:
    """transformers' std for normal init: initializer_range, else init_std (BART family, ProphetNet), else 0.02."""
    for key in ("initializer_range", "init_std"):
        value = config.get(key)
        if value is not None:
            return float(value)
    return 0.02


def init_weights(model: nn.Module, only_meta: bool = False, dtype=torch.float32) -> list[str]:
    """(Re)initialise the parameters of `model` (only those still on the meta device, if `only_meta`: they get real
    storage); returns their names."""
    config, spec = model.config, getattr(model, "spec", None)
    rule = getattr(spec, "init_std", None)
    std = default_std(config)
    # a model inside this one (an EncoderDecoderModel's halves) follows its own architecture's rules
    nested = {name: module for name, module in model.named_modules()
              if name and module is not model and getattr(module, "spec", None) is not None and hasattr(module, "task")}
    nested = {name: module for name, module in nested.items() if not any(name.startswith(o + ".") for o in nested)}
    done = [f"{name}.{inner}" for name, module in nested.items() for inner in init_weights(module, only_meta, dtype)]
    for module_name, module in model.named_modules():
        if any(module_name == o or module_name.startswith(o + ".") for o in nested):
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            if only_meta and not param.is_meta:
                continue
            full = f"{module_name}.{name}" if module_name else name
            data = torch.empty(param.shape, dtype=dtype if param.is_meta else param.dtype, device=param.device
                               if not param.is_meta else "cpu")
            custom = rule(full, config) if rule is not None else None
            with torch.no_grad():
                if name == "weight" and isinstance(module, (nn.LayerNorm, RMSNorm)):
                    data.fill_(1.0 if custom is None else custom)
                elif custom is not None:
                    data.normal_(0.0, custom)
                elif name == "weight" and isinstance(module, (nn.Linear, nn.Embedding)):
                    data.normal_(0.0, std)
                else:
                    data.zero_()
                if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                    data[module.padding_idx] = 0
            if param.is_meta:
                setattr(module, name, nn.Parameter(data, requires_grad=param.requires_grad))
            else:
                param.data.copy_(data)
            done.append(full)
    return done


def scaled_residual_std(templates: tuple[str, ...]):
    """GPT-2: the projections that write into the residual stream start at std / sqrt(2 * layers)."""
    import re

    patterns = [re.compile(r"(^|\.)" + re.escape(t).replace(r"\{\}", r"\d+") + "$") for t in templates]

    def rule(name, config):
        if any(p.search(name) for p in patterns):
            return default_std(config) / (2 * config.num_hidden_layers) ** 0.5
        return None
    return rule
