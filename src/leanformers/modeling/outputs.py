"""Model outputs: attribute access (`out.logits`), key access (`out["logits"]`) and tuple access (`out[0]`), as in
transformers. Fields that are None are left out, so `out[0]` is the first thing actually computed."""
from __future__ import annotations


class ModelOutput(dict):
    def __init__(self, **fields):
        super().__init__((k, v) for k, v in fields.items() if v is not None)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)  # an absent field reads as None, like transformers' dataclasses

    def __setattr__(self, name, value):
        self[name] = value

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def __iter__(self):
        return iter(self.keys())

    def to_tuple(self):
        return tuple(self.values())

    def __repr__(self):
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.items())
        return f"ModelOutput({inner})"


def _short(value):
    shape = getattr(value, "shape", None)
    return f"tensor{tuple(shape)}" if shape is not None else repr(value)
