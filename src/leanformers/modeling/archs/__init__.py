"""model_type -> the module in this folder that declares its Spec (imported only when that model_type is used)."""
ARCHITECTURES = {
    "bert": "bert",
    "transfo-xl": "transfo_xl",
}
