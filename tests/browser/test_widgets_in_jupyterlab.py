"""End-to-end (issue 7): the r / λ₀ and ε sliders work in a real JupyterLab.

What a student does, done by a headless Chromium through Playwright:

1. a JupyterLab server (this venv's ``python -m jupyter lab``) serves a temporary
   copy of ``notebooks/`` on 127.0.0.1, a free port and a random token, with
   ``HFLIB_QUICK=1``, isolated Jupyter config/data/runtime/settings folders and
   ``PYTHONPATH`` pointing at this checkout (so the kernel imports this hflib);
2. the notebook is opened at ``/lab/tree/NN_topic.ipynb`` and run through the menu
   *Run → Run All Cells*; we wait, like Galata's ``notebook.run()``, for the status
   bar to say *Idle* and every non-empty code cell to have an execution count;
3. each slider is found by its label ("r", "λ₀", "ε"), moved with the keyboard
   (focus the handle, press End / ArrowLeft) and the plot and printed line below it
   must change and name the new value; no "Error displaying widget", no traceback;
4. screenshots of the widget cell before and after every move go to
   ``test-artifacts/browser/`` (git-ignored; CI uploads it).

Locally the test skips when Playwright or Chromium is missing; with ``CI=true`` that
is a failure. Install both with ``.ci/install-browser.sh`` (never ``playwright
install``: it downloads a browser; we drive the system Chromium).

Debugging: ``HFLIB_BROWSER_NOTEBOOKS=tests/browser/fixtures`` runs the same test on
two small fixture notebooks holding only the widget calls; ``HFLIB_CHROMIUM`` names
another Chromium binary; ``HFLIB_BROWSER_HEADED=1`` shows the window (needs a display).
"""
from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOKS = Path(os.environ.get("HFLIB_BROWSER_NOTEBOOKS") or ROOT / "notebooks")
if not NOTEBOOKS.is_absolute():
    NOTEBOOKS = ROOT / NOTEBOOKS
CHROMIUM = os.environ.get("HFLIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

SERVER_START_S = 90      # JupyterLab up and answering /api/status
RUN_ALL_S = 150          # Run All Cells on a quick-mode notebook (conventions: ≤ 60 s)
WIDGET_S = 60            # a slider move until the redrawn plot shows up (first r move trains)
UI_MS = 30_000           # any other single UI step

STDERR_MIME = "application/vnd.jupyter.stderr"
STDOUT_MIME = "application/vnd.jupyter.stdout"
# An error output, or an exception printed to stderr; TensorFlow's log lines never match.
ERROR_RE = re.compile(r"Traceback|^\s*[A-Za-z_][\w.]*(Error|Exception)\b", re.M)
WIDGET_FAILURE_TEXT = "Error displaying widget"


@dataclass(frozen=True)
class Move:
    label: str          # the slider's description, as the reader sees it
    slug: str           # for file names
    keys: tuple         # what a person presses with the handle focused
    quantity: str       # the plotted quantity the printed line reports, as a regex with one number group
    promise: str        # how it must change: "changes", "decreases" or "increases"


@dataclass(frozen=True)
class Case:
    notebook: str
    moves: tuple


CASES = [
    # r: End → r = 3.000 (from 1.5): the final λ moves; λ₀: four ArrowLeft steps of 10^0.25 → λ₀ = 0.1
    # (from 1): the trace starts ten times lower, and so ends elsewhere.
    Case("04_damping.ipynb", (Move("r", "r", ("End",), r"final λ = (\S+?),", "changes"),
                              Move("λ₀", "lambda0", ("ArrowLeft",) * 4, r"final λ = (\S+?),", "changes"))),
    # ε: End → ε = 1.0e-1 (from 5.0e-4): CG stops at an earlier iteration.
    Case("05_conjugate_gradient.ipynb", (Move("ε", "eps", ("End",), r"CG stops after (\d+) iterations",
                                              "decreases"),)),
]


# ---------------------------------------------------------------------------------- requirements
def _on_ci():
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _require_browser():
    """Playwright's sync API, or skip (locally) / fail (CI=true) with the reason."""
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        missing.append("the `playwright` Python package")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM} (set HFLIB_CHROMIUM to use another binary)")
    if missing:
        why = ("browser test needs " + " and ".join(missing)
               + "; install with `.ci/install-browser.sh` (apt-get chromium + pip playwright; "
                 "never `playwright install`)")
        if _on_ci():
            pytest.fail(f"{why} [CI=true: a missing browser is a failure, not a skip]", pytrace=False)
        pytest.skip(why)
    return sync_api


# ---------------------------------------------------------------------------------- the server
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings_dir: Path):
    """User settings for the test's own JupyterLab: every cell in the DOM, kernel auto-start,
    no news/update requests (nothing outside the machine is contacted)."""
    settings = {
        "notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = settings_dir / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def _children(pid):
    """Direct children of `pid` (Linux /proc); used to reap kernels the server started."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie is as good as gone
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LabServer:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "notebooks"
        self.runtime_dir = tmp / "runtime"
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / "jupyterlab-server.log"
        self.proc = None
        self._log = None

    def start(self):
        shutil.copytree(NOTEBOOKS, self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "student"))
        for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
            (self.tmp / name).mkdir(exist_ok=True)
        _write_settings(self.tmp / "settings")
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # a CI-wide Agg backend would hide the plots in the notebook
        env.update(
            HFLIB_QUICK="1",  # HFLIB_DATA_DIR, if set, passes through unchanged
            PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]),
            TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            JUPYTER_CONFIG_DIR=str(self.tmp / "config"),
            JUPYTER_DATA_DIR=str(self.tmp / "data"),  # no user kernelspec can shadow the venv's python3
            JUPYTER_PREFER_ENV_PATH="1",
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            JUPYTERLAB_SETTINGS_DIR=str(self.tmp / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.tmp / "workspaces"),
            IPYTHONDIR=str(self.tmp / "ipython"),
        )
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI runners often run as root
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_S} s:\n{self.log_tail()}")
            time.sleep(0.2)  # polling a socket, not waiting on the UI

    def api(self, method, path, timeout=10):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n=60):
        if self._log:
            self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        """Shut down kernels and server via the API; then signal the process group; then
        kill any kernel the server started that is still alive (kernels run in their own sessions)."""
        if self.proc is None:
            return
        kernels = _children(self.proc.pid)
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=10)
            except (urllib.error.URLError, OSError):
                pass
            for sig, wait in ((None, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                if sig is not None:
                    try:
                        os.killpg(self.proc.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for pid in kernels:
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self._log:
            self._log.close()


@pytest.fixture(scope="module")
def sync_api():
    return _require_browser()


@pytest.fixture(scope="module")
def lab(sync_api, tmp_path_factory):
    if not NOTEBOOKS.is_dir():
        pytest.skip(f"no notebooks folder at {NOTEBOOKS}")
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server.start()
    finally:
        server.stop()
        assert server.proc is None or server.proc.poll() is not None, "jupyter lab is still running"


@pytest.fixture(scope="module")
def browser(sync_api, tmp_path_factory):
    headed = os.environ.get("HFLIB_BROWSER_HEADED") == "1"
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=not headed,
            args=[a for a in CHROMIUM_ARGS if not (headed and a == "--headless")],
            viewport={"width": 1400, "height": 3000},
        )
        try:
            context.set_default_timeout(UI_MS)
            yield context
        finally:
            context.close()


# ---------------------------------------------------------------------------------- the UI
# One poll of the page: has Run All finished? Mirrors Galata's waitForRun (status bar "Idle"
# and every code cell executed), and stops early when execution aborted on an error.
RUN_STATE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const bar = document.querySelector('#jp-main-statusbar');
  const idle = bar && Array.from(bar.querySelectorAll('*')).some(
    el => el.children.length === 0 && /(^|\\|)\\s*Idle\\s*$/.test(el.textContent));
  if (!idle) return null;
  let pending = 0, queued = 0;
  for (const cell of panel.querySelectorAll('.jp-CodeCell')) {
    const source = cell.querySelector('.jp-InputArea-editor .cm-content')?.textContent ?? '';
    if (!source.trim()) continue;
    const prompt = cell.querySelector('.jp-InputPrompt')?.textContent ?? '';
    if (prompt.includes('*')) queued++;
    else if (!/\\[\\d+\\]/.test(prompt)) pending++;
  }
  if (queued) return null;
  return pending ? 'stopped' : 'done';
}"""


def _idle(page):
    """The kernel status in the status bar ('Python 3 (ipykernel) | Idle'), once it says Idle."""
    return page.locator("#jp-main-statusbar").get_by_text(re.compile(r"^(.*\|)?\s*Idle\s*$"))


def _exact(text):
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def _problems(page):
    """Texts of error outputs / tracebacks and widget failures anywhere in the notebook."""
    found = []
    for text in page.locator(f'.jp-NotebookPanel [data-mime-type="{STDERR_MIME}"]').all_inner_texts():
        if ERROR_RE.search(text):
            found.append(text.strip()[-2000:])
    for text in page.get_by_text(WIDGET_FAILURE_TEXT).all_inner_texts():
        found.append(text.strip())
    return found


def _assert_no_problems(page, when):
    problems = _problems(page)
    assert not problems, f"{when}: errors in the notebook:\n\n" + "\n\n---\n\n".join(problems)


def _open_and_run_all(page, lab, name):
    started = time.monotonic()
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    # The kernel starts by itself (autoStartDefaultKernel); should JupyterLab still ask which
    # kernel to use, take its preselected default (python3), as a person would.
    dialog = page.locator(".jp-Dialog")
    status = _idle(page)
    status.or_(dialog).first.wait_for(timeout=RUN_ALL_S * 1000)
    if not status.is_visible() and dialog.is_visible():
        dialog.locator("button.jp-mod-accept").click()
        dialog.wait_for(state="hidden")
        status.wait_for(timeout=RUN_ALL_S * 1000)
    if panel.locator(".jp-InputPrompt").get_by_text(re.compile(r"\[\d+\]")).count():
        _menu(page, "Edit", "Clear Outputs of All Cells")  # committed outputs: reset the counts
    opened = time.monotonic()
    _menu(page, "Run", "Run All Cells")
    state = page.wait_for_function(RUN_STATE_JS, timeout=RUN_ALL_S * 1000, polling=250).json_value()
    print(f"\n  {name}: opened in {opened - started:.0f} s, Run All Cells took {time.monotonic() - opened:.0f} s", end="")
    _assert_no_problems(page, f"{name}: Run All Cells")
    assert state == "done", f"{name}: Run All Cells stopped before the last cell"


def _menu(page, menu, item):
    page.locator(".lm-MenuBar-itemLabel").filter(has_text=_exact(menu)).click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=_exact(item)).click()


def _widget(page, label):
    """The interactive view whose slider reads `label`, its slider, handle, readout and output."""
    slider_with_label = page.locator(".widget-slider").filter(
        has=page.locator(".widget-label").filter(has_text=_exact(label)))
    view = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .widget-interact").filter(
        has=slider_with_label).first
    slider = view.locator(".widget-slider").filter(
        has=page.locator(".widget-label").filter(has_text=_exact(label))).first
    return {
        "view": view,
        "cell": view.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-CodeCell ')][1]"),
        "handle": slider.locator(".noUi-handle").first,
        "readout": slider.locator(".widget-readout").first,
    }


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _resolution(text):
    """The value of one unit in the last digit of a displayed number: '3.000' → 1e-3, '1.0e-1' → 1e-2."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _names_value(line, label, readout):
    """Does the printed line name the value the slider reads? 'ε = 1.0e-01' matches the readout
    '1.0e-1' (Python and the browser format differently): equal up to the coarser display."""
    m = re.search(rf"(?<!\w){re.escape(label)}\s*=\s*({_NUMBER})", line)
    if not m or not re.fullmatch(_NUMBER, readout.strip()):
        return False
    shown, read = m.group(1), readout.strip()
    return abs(float(shown) - float(read)) <= max(_resolution(shown), _resolution(read)) * 0.5 + 1e-12


# What the view below a slider shows now: its last printed line and its last image.
SHOWN_JS = """(view) => {
  const texts = view.querySelectorAll('.widget-output [data-mime-type="%s"]');
  const images = view.querySelectorAll('.widget-output img');
  return {text: texts.length ? texts[texts.length - 1].textContent.trim() : '',
          src: images.length ? images[images.length - 1].getAttribute('src') : ''};
}""" % STDOUT_MIME
# The slider's label font size and track width in CSS pixels (projector: ≥ 18 px, ≥ 500 px).
PROJECTOR_JS = """(handle) => {
  const slider = handle.closest('.widget-slider');
  const label = slider.querySelector('.widget-label');
  const track = slider.querySelector('.noUi-target') || slider.querySelector('.slider-container');
  return {font: parseFloat(getComputedStyle(label).fontSize), track: track.getBoundingClientRect().width};
}"""
CHANGED_JS = "([view, old]) => (%s)(view).text + '|' + (%s)(view).src !== old" % (SHOWN_JS, SHOWN_JS)


def _wait_for_plot(page, w, label, name):
    """Wait until the view below the slider shows a plot and a printed line naming the value
    the slider reads (waking on every change of the view; an intermediate redraw is skipped)."""
    deadline = time.monotonic() + WIDGET_S
    view = w["view"].element_handle()
    while True:
        readout = w["readout"].inner_text().strip()
        shown = view.evaluate(SHOWN_JS)
        if shown["src"] and _names_value(shown["text"], label, readout):
            break
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            page.wait_for_function(CHANGED_JS, arg=[view, shown["text"] + "|" + shown["src"]],
                                   timeout=left * 1000, polling=100)
        except Exception as exc:
            problems = _problems(page)
            raise AssertionError(
                f"{name}: below the {label} slider (reading {readout!r}) no plot with a line naming "
                f"that value within {WIDGET_S} s; last line: {shown['text']!r}"
                + (":\n" + "\n".join(problems) if problems else "")) from exc
    _idle(page).wait_for(timeout=WIDGET_S * 1000)
    return {"readout": readout, "text": shown["text"], "src": shown["src"]}


def _check_kernel(lab, name):
    """The notebook's kernel runs this venv's python and imports hflib from this checkout."""
    from jupyter_client import BlockingKernelClient

    sessions = [s for s in lab.api("GET", "/api/sessions") if s["path"].endswith(name)]
    assert sessions, f"no kernel session for {name}"
    kc = BlockingKernelClient(connection_file=str(lab.runtime_dir / f"kernel-{sessions[0]['kernel']['id']}.json"))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        exprs = {"executable": "__import__('sys').executable", "prefix": "__import__('sys').prefix",
                 "hflib": "__import__('hflib').__file__", "quick": "__import__('hflib').experiments.quick_mode()"}
        reply = kc.execute("", silent=True, store_history=False, user_expressions=exprs, reply=True, timeout=30)
        got = {k: ast.literal_eval(v["data"]["text/plain"]) for k, v in reply["content"]["user_expressions"].items()}
    finally:
        kc.stop_channels()
    assert Path(got["prefix"]).resolve() == Path(sys.prefix).resolve(), f"kernel is not this venv's python: {got}"
    assert Path(got["executable"]).resolve() == Path(sys.executable).resolve(), got
    assert Path(got["hflib"]).resolve().is_relative_to(ROOT), f"kernel imports another hflib: {got['hflib']}"
    assert got["quick"] is True, "HFLIB_QUICK=1 did not reach the kernel"


def _shutdown_kernel(lab, name):
    for s in lab.api("GET", "/api/sessions"):
        if s["path"].endswith(name):
            lab.api("DELETE", f"/api/sessions/{s['id']}")


@pytest.mark.parametrize("case", CASES, ids=[c.notebook.split("_")[0] for c in CASES])
def test_sliders_redraw_the_plot(case, lab, browser):
    if not (NOTEBOOKS / case.notebook).is_file():
        pytest.skip(f"{NOTEBOOKS.relative_to(ROOT) if NOTEBOOKS.is_relative_to(ROOT) else NOTEBOOKS}"
                    f"/{case.notebook} does not exist (yet): nothing to drive")
    if not (lab.root / case.notebook).is_file():
        pytest.skip(f"{case.notebook} appeared after the JupyterLab server copied the notebooks")
    stem = Path(case.notebook).stem
    page = browser.new_page()
    try:
        _open_and_run_all(page, lab, case.notebook)
        _check_kernel(lab, case.notebook)
        for i, move in enumerate(case.moves, start=1):
            w = _widget(page, move.label)
            # The view, or what JupyterLab shows instead when it cannot render widgets.
            text_repr = page.get_by_text(re.compile(r"^\s*interactive\(children="))
            failed = page.get_by_text(WIDGET_FAILURE_TEXT)
            try:
                w["view"].or_(text_repr).or_(failed).first.wait_for(timeout=UI_MS)
            except Exception as exc:
                raise AssertionError(f"{case.notebook}: no slider labelled {move.label!r}") from exc
            assert not text_repr.count(), (
                f"{case.notebook}: the output shows the widget's text repr, not the slider: the JupyterLab "
                "widget manager (jupyterlab_widgets, @jupyter-widgets/jupyterlab-manager) is missing or "
                "disabled in the server's environment")
            _assert_no_problems(page, f"{case.notebook}: rendering the {move.label} slider")
            assert w["view"].is_visible(), f"{case.notebook}: no slider labelled {move.label!r}"
            before = _wait_for_plot(page, w, move.label, case.notebook)
            w["cell"].screenshot(path=ARTIFACTS / f"{stem}-{i}-{move.slug}-before.png")

            w["handle"].scroll_into_view_if_needed()
            w["handle"].focus()
            for key in move.keys:
                w["handle"].press(key)
            page.wait_for_function("([el, old]) => el.textContent.trim() !== old",
                                   arg=[w["readout"].element_handle(), before["readout"]], timeout=UI_MS)
            after = _wait_for_plot(page, w, move.label, case.notebook)
            w["cell"].screenshot(path=ARTIFACTS / f"{stem}-{i}-{move.slug}-after.png")

            assert after["readout"] != before["readout"], f"{move.label}: the slider did not move"
            assert after["text"] != before["text"], (
                f"{move.label}: printed line unchanged: {after['text']!r}")
            assert after["src"].startswith("data:image/png;base64,"), after["src"][:80]
            assert after["src"] != before["src"], f"{move.label}: the plot did not change"
            was, now = (float(re.search(move.quantity, shown["text"]).group(1)) for shown in (before, after))
            kept = {"changes": now != was, "decreases": now < was, "increases": now > was}[move.promise]
            assert kept, f"{move.label}: {move.quantity!r} went {was} → {now}; the slider promises it {move.promise}"
            style = w["handle"].evaluate(PROJECTOR_JS)
            assert style["font"] >= 18 and style["track"] >= 500, f"{move.label}: not projector-sized: {style}"
            _assert_no_problems(page, f"{case.notebook} after moving {move.label}")
            print(f"\n  {case.notebook} {move.label}: {before['text']!r}\n"
                  f"  {' ' * len(case.notebook)} {' ' * len(move.label)}→ {after['text']!r}")
    except BaseException:
        try:
            page.screenshot(path=ARTIFACTS / f"{stem}-FAILED.png", full_page=True)
        except Exception:
            pass
        raise
    finally:
        page.close()
        try:
            _shutdown_kernel(lab, case.notebook)
        except (urllib.error.URLError, OSError):
            pass
