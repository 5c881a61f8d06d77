"""Find TensorFlow's log lines in notebook outputs (issue 13: notebooks must stay quiet).

TensorFlow's C++ start-up and runtime messages reach a notebook as stderr stream outputs
(ipykernel forwards file descriptor 2): absl lines such as ``E0000 00:00:… failed call to
cuInit``, the oneDNN and CPU-feature notices, ``Not handling type DT_DOUBLE`` blocks, and
Python-logger notices such as ``WARNING:tensorflow:… triggered tf.function retracing``.
Under pytest, ipykernel stops forwarding file-descriptor output when it finds ``PYTEST_CURRENT_TEST``
in its environment, so TensorFlow's C++ lines would silently miss the check: start test kernels
with `kernel_env()`, which leaves that variable out, so that they show what JupyterLab shows.
Python warnings that hflib raises on purpose (``UserWarning: …``) and progress bars are not
matched. Used by notebooks/conftest.py on every nbval cell and by the student-copy test.
"""
from __future__ import annotations

import os
import re

PATTERNS = (
    r"^[IWEF]\d{4} ",                       # absl / glog prefix: I0000 00:00:1712345678.9 …
    r"absl::InitializeLog",                 # "All log messages before absl::InitializeLog() …"
    r"cuInit|cudart_stub|cuda_dnn|cuda_fft|cuda_blas|Could not find cuda drivers",
    r"oneDNN custom operations|cpu_feature_guard|This TensorFlow binary is optimized",
    r"Unable to register cu(?:DNN|FFT|BLAS) factory|TF-TRT Warning",
    r"DT_DOUBLE",
    r"retracing",
    r"^WARNING:tensorflow:|^WARNING:absl:",
)
_NOISE = re.compile("|".join(f"(?:{p})" for p in PATTERNS), re.MULTILINE)


def noise_lines(text: str) -> list[str]:
    """The lines of `text` that are TensorFlow log noise."""
    return [line for line in text.splitlines() if _NOISE.search(line)]


def output_noise(outputs) -> list[str]:
    """Noise lines in the stderr stream outputs of one cell (nbformat output dicts)."""
    found = []
    for out in outputs or ():
        if out.get("output_type", "stream") == "stream" and out.get("name") == "stderr":
            text = out.get("text", "")
            found += noise_lines("".join(text) if isinstance(text, list) else text)
    return found


def notebook_noise(nb) -> dict[int, list[str]]:
    """{cell index: noise lines} for an executed notebook."""
    report = {}
    for index, cell in enumerate(nb.cells):
        lines = output_noise(cell.get("outputs"))
        if lines:
            report[index] = lines
    return report


def kernel_env() -> dict:
    """The environment for a test kernel that forwards fd 1/2 output like a JupyterLab kernel does."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
