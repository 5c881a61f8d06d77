"""hflib's four layers: each module imports only modules of its own layer or below, and
`import hflib` is free of side effects (no TensorFlow, no pyplot, no GPU settings)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hflib"

LAYERS = {
    1: {"checks", "vectors", "losses", "curvature", "cg", "damping", "preconditioners", "linesearch", "models",
        "spectrum"},
    2: {"batch", "optimizer"},
    3: {"history", "callbacks", "checkpoints", "training", "baselines"},
    4: {"data", "experiments", "cli", "widgets", "plotting", "device", "notebook", "quiet", "__main__"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.name == "__init__" and rel.parent == Path("."):
            continue
        yield rel.parts[0], path


def _imported_hflib_modules(path):
    """Top-level hflib modules that `path` imports (relative or absolute imports)."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts) - 1           # 1 inside hflib/data/
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = node.level - depth                        # levels above the package root
                if base > 1:
                    continue
                if node.module:
                    found.add(node.module.split(".")[0] if base == 1 else path.parent.name)
                else:
                    found.update(a.name for a in node.names if base == 1)
            elif node.module and node.module.split(".")[0] == "hflib" and "." in node.module:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("hflib."))
    return found


def test_every_module_has_a_layer():
    assert {name for name, _ in _modules()} <= set(LAYER_OF), set(n for n, _ in _modules()) - set(LAYER_OF)


@pytest.mark.parametrize("name, path", list(_modules()), ids=lambda v: str(v) if isinstance(v, str) else v.name)
def test_no_module_imports_a_higher_layer(name, path):
    higher = {m for m in _imported_hflib_modules(path) if m in LAYER_OF and LAYER_OF[m] > LAYER_OF[name]}
    assert not higher, f"{path.relative_to(PACKAGE)} (layer {LAYER_OF[name]}) imports {higher}"


def test_the_core_is_pure_tensorflow():
    """Layer 1 uses no tqdm and no matplotlib."""
    for name, path in _modules():
        if LAYER_OF[name] == 1:
            source = path.read_text()
            assert "tqdm" not in source and "matplotlib" not in source, path.name


def test_import_hflib_has_no_side_effects():
    """(Keras itself imports pyplot once it is imported; hflib's own modules import it only in
    `plotting` and `widgets`.)"""
    code = ("import sys, hflib; heavy = [m for m in ('tensorflow', 'matplotlib', 'keras') if m in sys.modules];"
            "print(heavy); assert not heavy; assert hflib.HessianFree.__name__ == 'HessianFree'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
