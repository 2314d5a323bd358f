"""Imports run one way: hub -> config -> {tokenization, modeling -> loading} -> generation -> pipelines -> cli.

Only module-level imports count: a function may import an upper layer lazily (PreTrainedModel.from_pretrained ->
loading, .generate -> generation), which keeps `import leanformers` light and the layering readable."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "leanformers"
LAYER = {"hub": 0, "gguf": 1, "config": 1, "tokenization": 2, "modeling": 2, "loading": 3, "saving": 3,
         "generation": 4, "pipelines": 5, "training": 6, "cli": 6, "batch": 6, "serving": 6, "__init__": 7}


def room(module: str) -> str:
    return module.split(".")[0]


def top_level_imports(path: Path, module: str):
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in tree.body:  # module level only
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join([*base, node.module] if node.module else base)
            yield target.split(".", 1)[1] if "." in target else target
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leanformers."):
            yield node.module.split(".", 1)[1]


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = "leanformers." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = room(module.split(".", 1)[1])
        for target in top_level_imports(path, module):
            if room(target) in LAYER and LAYER[room(target)] > LAYER[own]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_every_room_has_a_layer():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith("_")
             and (p.suffix == ".py" or p.is_dir()) and p.name != "__pycache__"}
    assert rooms <= set(LAYER), rooms - set(LAYER)
