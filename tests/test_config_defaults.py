"""config.DEFAULTS: what a config.json may leave out equals what transformers' config classes supply."""
import pytest
import transformers

from leanformers.config import DEFAULTS, Config

# keys we default that the oracle's class does not define (transformers hard-codes them in the model instead)
NOT_CONFIG_KEYS = {("distilbert", "layer_norm_eps")}


@pytest.mark.parametrize("model_type", sorted(DEFAULTS))
def test_defaults_equal_the_oracle_config_class(model_type):
    theirs = transformers.AutoConfig.for_model(model_type)
    ours = Config(model_type=model_type)
    compared = 0
    for key in DEFAULTS[model_type]:
        if (model_type, key) in NOT_CONFIG_KEYS or not hasattr(theirs, key):
            continue
        assert getattr(ours, key) == getattr(theirs, key), f"{model_type}.{key}"
        compared += 1
    assert compared >= len(DEFAULTS[model_type]) - 3, f"{model_type}: most defaults should exist in the oracle"
