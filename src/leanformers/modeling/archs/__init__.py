"""model_type -> the module in this folder that declares its Spec (imported only when that model_type is used)."""
ARCHITECTURES = {
    "bert": "bert",
    "gpt2": "gpt2",
    "openai-gpt": "openai_gpt",
    "ctrl": "ctrl",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "transfo-xl": "transfo_xl",
    "transfo-xl": "transfo_xl",
    "bart": "bart",
    "mbart": "bart",
    "marian": "marian",
    "pegasus": "pegasus",
    "m2m_100": "m2m_100",
    "t5": "t5",
    "mt5": "t5",
}
