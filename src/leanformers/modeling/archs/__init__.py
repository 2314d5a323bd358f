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
}
