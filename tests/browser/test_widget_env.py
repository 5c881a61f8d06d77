"""The classic "widgets don't display" causes, checked without a browser.

JupyterLab renders ipywidgets only when the front-end widget manager
(`@jupyter-widgets/jupyterlab-manager`, shipped by the `jupyterlab_widgets` package)
is installed *in the environment the server runs from* and enabled; otherwise a
notebook shows `interactive(children=(FloatSlider(...` as text or "Error displaying
widget". And the notebook's default kernel must be this environment's python, or the
kernel may import another ipywidgets / hflib (or none).
"""
from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

MANAGER = "@jupyter-widgets/jupyterlab-manager"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jupyter(*args):
    """`python -m jupyter ...` with this interpreter, as the browser test starts the server."""
    out = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120)
    return out.returncode, ANSI.sub("", out.stdout + out.stderr)


def test_jupyterlab_widgets_is_importable():
    import ipywidgets
    import jupyterlab_widgets

    versions = {name: md.version(name) for name in
                ("jupyterlab", "ipywidgets", "jupyterlab_widgets", "ipykernel", "jupyter_server")}
    print("\n  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    assert int(ipywidgets.__version__.split(".")[0]) == 8, ipywidgets.__version__
    # ipywidgets 8 talks to jupyterlab_widgets 3 (front end @jupyter-widgets/jupyterlab-manager 5).
    assert int(md.version("jupyterlab_widgets").split(".")[0]) == 3, md.version("jupyterlab_widgets")
    assert Path(jupyterlab_widgets.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), (
        f"jupyterlab_widgets comes from {jupyterlab_widgets.__file__}, not this environment ({sys.prefix})")


def test_widget_manager_labextension_is_enabled():
    rc, out = _jupyter("labextension", "list")
    assert rc == 0, out
    lines = [line for line in out.splitlines() if MANAGER in line]
    assert lines, f"{MANAGER} is not installed for this JupyterLab:\n{out}"
    line = lines[0]
    assert re.search(r"\benabled\b", line) and re.search(r"\bOK\b", line), (
        f"{MANAGER} is installed but not enabled/OK:\n{out}")
    assert "jupyterlab_widgets" in line, f"{MANAGER} does not come from the jupyterlab_widgets package: {line}"


def test_default_python3_kernel_is_this_python():
    rc, out = _jupyter("kernelspec", "list", "--json")
    assert rc == 0, out
    specs = json.loads(out[out.index("{"):])["kernelspecs"]
    assert "python3" in specs, f"no python3 kernelspec: {sorted(specs)}"
    argv0 = specs["python3"]["spec"]["argv"][0]
    # jupyter_client runs 'python' / 'python3' / 'python3.X' as the server's own sys.executable.
    short = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if argv0 not in short:
        assert Path(argv0).resolve() == Path(sys.executable).resolve(), (
            f"the python3 kernelspec at {specs['python3']['resource_dir']} runs {argv0}, "
            f"not {sys.executable}")
    import ipykernel  # noqa: F401  (the kernel python3 starts)
