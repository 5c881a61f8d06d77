"""Replay the "try changing this" suggestions of the course notebooks (issue 14, item 4).

A suggestion is a comment line in a code cell (notebooks/CONVENTIONS.md, "Try lines")::

    # try: kappa = 100                 # any Python assignment, with an optional comment after it
    # try[slow]: BATCH = 1000          # replayed only when HFLIB_TRY_SLOW=1
    # try[fails]: R = 3.0              # announced: the text beside it says which check then fails

Replaying one suggestion: the assignment is inserted right after the cell's first top-level
statement that binds one of its names; that variant of the cell runs, then the rest of its Step
(every code cell up to the next ``## `` heading), then every later cell that reads a name the
change can reach (a static data-flow pass over the cells: a statement that reads a changed name
changes the names it binds and the objects it mutates), together with the cells between that
those need. The replay fails when any of those cells raises — unless the
suggestion is marked ``[fails]``, which then *must* raise. Cells tagged ``widget`` or
``nbval-skip`` are never replayed.

During ``pytest --nbval-lax`` (notebooks/conftest.py) the suggestions of a cell are replayed in
nbval's own kernel just before nbval runs the cell itself, so the notebook executes once.
Standalone, for authors::

    python tools/try_suggestions.py notebooks/01_newton.ipynb [...]
"""
from __future__ import annotations

import ast
import os
import re
import sys
import time
from typing import NamedTuple

TRY_LINE = re.compile(r"^\s*#\s*try(?:\[(?P<mark>[a-z]+)\])?:\s*(?P<text>.*)$")
MARKS = ("", "slow", "fails")
STEP_HEADING = re.compile(r"^## ", re.MULTILINE)
SKIP_TAGS = {"widget", "nbval-skip"}
SLOW_ENV, BUDGET_ENV = "HFLIB_TRY_SLOW", "HFLIB_TRY_BUDGET_S"
DEFAULT_BUDGET_S = 30.0        # quick mode: a replay that needs longer must be marked [slow]


class SuggestionError(ValueError):
    """A `# try:` line that is not in the machine-readable form."""


class Suggestion(NamedTuple):
    cell: int            # index of the cell in nb.cells
    line: int            # 0-based line in the cell's source
    statement: str       # the Python assignment, e.g. "kappa = 100"
    targets: tuple       # the names it binds
    mark: str            # "", "slow" or "fails"

    def __str__(self):
        return f"# try{'[' + self.mark + ']' if self.mark else ''}: {self.statement}"


# ------------------------------------------------------------------ parsing
def python_source(source: str) -> str:
    """A cell's source as plain Python (IPython magics translated)."""
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


def parse_line(line: str):
    """(mark, statement, targets) for a `# try:` line, None for any other line."""
    match = TRY_LINE.match(line)
    if not match:
        return None
    mark, text = match.group("mark") or "", match.group("text").strip()
    if mark not in MARKS:
        raise SuggestionError(f"unknown mark [{mark}] in {line.strip()!r}; use one of [slow], [fails]")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        raise SuggestionError(f"{line.strip()!r}: after '# try:' write one Python assignment "
                              f"(NAME = VALUE), optionally followed by '# why'") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
        raise SuggestionError(f"{line.strip()!r}: expected exactly one assignment NAME = VALUE")
    targets = []
    for target in tree.body[0].targets:
        elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        if not all(isinstance(e, ast.Name) for e in elements):
            raise SuggestionError(f"{line.strip()!r}: only plain names can be assigned")
        targets += [e.id for e in elements]
    return mark, ast.unparse(tree.body[0]), tuple(dict.fromkeys(targets))


def find_suggestions(nb) -> list[Suggestion]:
    """Every suggestion in the notebook's code cells, in order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for number, line in enumerate(cell.source.splitlines()):
            parsed = parse_line(line)
            if parsed:
                mark, statement, targets = parsed
                found.append(Suggestion(index, number, statement, targets, mark))
    return found


# ------------------------------------------------------------------ the variant and its scope
def _bound_names(node) -> set:
    """Names a top-level statement binds (not those local to functions, classes or comprehensions;
    not the throw-away name `_`)."""
    names = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Name) and isinstance(current.ctx, (ast.Store, ast.Del)):
            names.add(current.id)
        elif isinstance(current, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in current.names}
        elif isinstance(current, ast.ExceptHandler) and current.name:
            names.add(current.name)
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(current.name)
            continue
        if isinstance(current, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        stack.extend(ast.iter_child_nodes(current))
    return names - {"_"}


def _block_reads(statements, bound=()) -> set:
    """Names a block reads before it binds them itself."""
    reads, bound = set(), set(bound)
    for statement in statements:
        reads |= _read_names(statement) - bound
        bound |= _bound_names(statement)
    return reads


def _read_names(node) -> set:
    """Names a statement reads from the notebook's namespace, including at call time inside the
    functions and lambdas it defines (their parameters and local variables excluded), and not
    counting names the statement itself binds before reading them (loop and `with … as` targets)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        arguments = node.args
        params = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
        params |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a}
        body = node.body if isinstance(node.body, list) else [ast.Expr(node.body)]
        local = params | set().union(*(_bound_names(b) for b in body))
        outside = set().union(*(_read_names(d) for d in arguments.defaults + arguments.kw_defaults if d))
        if not isinstance(node, ast.Lambda):
            outside |= set().union(*(_read_names(d) for d in node.decorator_list))
        return outside | (set().union(*(_read_names(b) for b in body)) - local)
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return _read_names(node.iter) | _block_reads(node.body + node.orelse, _bound_names(node.target))
    if isinstance(node, (ast.With, ast.AsyncWith)):
        targets = set().union(*(_bound_names(i.optional_vars) for i in node.items if i.optional_vars))
        return set().union(*(_read_names(i.context_expr) for i in node.items)) | _block_reads(node.body, targets)
    if isinstance(node, ast.ExceptHandler):
        return (_read_names(node.type) if node.type else set()) | _block_reads(node.body, {node.name} - {None})
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        parts += [g.iter for g in node.generators] + [c for g in node.generators for c in g.ifs]
        return set().union(*(_read_names(p) for p in parts)) - targets
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    names = set()
    for _, value in ast.iter_fields(node):
        if isinstance(value, list) and value and all(isinstance(v, ast.stmt) for v in value):
            names |= _block_reads(value)
        elif isinstance(value, list):
            names |= set().union(*(_read_names(v) for v in value if isinstance(v, ast.AST)))
        elif isinstance(value, ast.AST):
            names |= _read_names(value)
    return names


def _statements(source):
    return ast.parse(python_source(source)).body


def _mutated_names(node) -> set:
    """Names a statement may change in place: `x.append(…)`, `x.attr = …`, `x[i] = …`."""
    names = set()
    for n in ast.walk(node):
        base = None
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            base = n.func.value
        elif isinstance(n, (ast.Attribute, ast.Subscript)) and isinstance(n.ctx, ast.Store):
            base = n.value
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        if isinstance(base, ast.Name):
            names.add(base.id)
    return names


def _propagate(statements, changed: set, modules=frozenset()) -> bool:
    """Update `changed` over a cell's statements; True when the cell reads a changed name.

    A statement that reads a changed name changes what it binds and what it mutates in place
    (imported modules excepted); one that only rebinds a changed name makes it unchanged again.
    """
    touched = False
    for statement in statements:
        reads, binds = _read_names(statement), _bound_names(statement)
        if reads & changed:
            touched = True
            changed |= binds | (_mutated_names(statement) - modules)
        else:
            changed -= binds
    return touched


def _imported_names(nb) -> frozenset:
    """Every name an import statement binds anywhere in the notebook (modules are never "changed")."""
    names = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and not _skipped(cell):
            for statement in _statements(cell.source):
                for node in ast.walk(statement):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def _insertion_point(statements, suggestion: Suggestion) -> int:
    """Index of the cell's first top-level statement that binds one of the suggestion's names."""
    for k, statement in enumerate(statements):
        if _bound_names(statement) & set(suggestion.targets):
            return k
    raise SuggestionError(f"{suggestion}: the cell never assigns {', '.join(suggestion.targets)}")


def variant_source(source: str, suggestion: Suggestion) -> str:
    """The cell's source with the suggestion's assignment after the first statement binding one of its names."""
    python = python_source(source)
    statement = ast.parse(python).body[_insertion_point(ast.parse(python).body, suggestion)]
    lines = python.splitlines()
    return "\n".join(lines[: statement.end_lineno] + [suggestion.statement] + lines[statement.end_lineno:])


def _skipped(cell) -> bool:
    tags = set(cell.get("metadata", {}).get("tags", []))
    return cell.cell_type != "code" or bool(tags & SKIP_TAGS) or "NBVAL_SKIP" in cell.source


def _free_reads(statements) -> set:
    """Names a cell reads before binding them itself."""
    free, bound = set(), set()
    for statement in statements:
        free |= _read_names(statement) - bound
        bound |= _bound_names(statement)
    return free


def replay_cells(nb, suggestion: Suggestion) -> list[int]:
    """Indices of the cells to run after the variant, in order.

    The rest of the suggestion's Step, every later cell that reads a name the change reaches, and — because the replay runs before the notebook itself has reached the later
    cells — every cell between that those cells need names from.
    """
    statements = _statements(nb.cells[suggestion.cell].source)
    k = _insertion_point(statements, suggestion)
    modules = _imported_names(nb)
    changed = set(suggestion.targets)                  # the inserted assignment changes them ...
    _propagate(statements[k + 1:], changed, modules)   # ... for the rest of its own cell
    plan, in_step, parsed = set(), True, {}
    for index in range(suggestion.cell + 1, len(nb.cells)):
        cell = nb.cells[index]
        if cell.cell_type == "markdown" and STEP_HEADING.search(cell.source):
            in_step = False
        if _skipped(cell):
            continue
        parsed[index] = _statements(cell.source)
        if _propagate(parsed[index], changed, modules) or in_step:
            plan.add(index)
    pending = sorted(plan)
    while pending:                                     # close over what the planned cells need
        j = pending.pop()
        for name in _free_reads(parsed[j]):
            binders = [m for m in parsed if m < j and name in set().union(*map(_bound_names, parsed[m]))]
            if binders and binders[-1] not in plan:
                plan.add(binders[-1])
                pending.append(binders[-1])
    return sorted(plan)


# ------------------------------------------------------------------ running
class Outcome(NamedTuple):
    suggestion: Suggestion
    errors: list            # [(cell index, ename, evalue)]
    seconds: float
    skipped: bool

    def problem(self, budget_s):
        """A sentence saying what is wrong with this replay, or None."""
        s = self.suggestion
        where = f"cell {s.cell}, `{s}`"
        if self.skipped:
            return None
        if s.mark == "fails":
            return None if self.errors else f"{where}: announced to fail, but every replayed cell passed"
        if self.errors:
            index, ename, evalue = self.errors[0]
            return (f"{where} breaks cell {index}: {ename}: {evalue}\n  (make the check follow the parameters, "
                    f"or announce the failure: `# try[fails]: ...  # why it fails`)")
        if s.mark != "slow" and self.seconds > budget_s:
            return f"{where}: its replay took {self.seconds:.0f} s > {budget_s:.0f} s; mark it `# try[slow]:`"
        return None


def replay(nb, suggestion: Suggestion, execute, run_slow=None) -> Outcome:
    """Run the variant and its cells through `execute(source) -> None | (ename, evalue)`; stop at an error."""
    if run_slow is None:
        run_slow = os.environ.get(SLOW_ENV, "") == "1"
    if suggestion.mark == "slow" and not run_slow:
        return Outcome(suggestion, [], 0.0, True)
    start, errors = time.perf_counter(), []
    jobs = [(suggestion.cell, variant_source(nb.cells[suggestion.cell].source, suggestion))]
    jobs += [(i, nb.cells[i].source) for i in replay_cells(nb, suggestion)]
    for index, source in jobs:
        error = execute(source)
        if error:
            errors.append((index, *error))
            break
    return Outcome(suggestion, errors, time.perf_counter() - start, False)


def budget_s():
    return float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S))


def kernel_executor(kc, timeout=900):
    """`execute(source)` for a jupyter_client BlockingKernelClient: None, or (ename, evalue)."""
    def execute(source):
        reply = kc.execute_interactive(source, timeout=timeout, store_history=False, allow_stdin=False,
                                       stop_on_error=False, output_hook=lambda msg: None)
        content = reply["content"]
        return (content.get("ename", "Error"), content.get("evalue", "")) if content["status"] == "error" else None
    return execute


def replay_notebook(path, timeout=900) -> list[Outcome]:
    """Run a notebook once in a fresh kernel, replaying each suggestion just before its cell."""
    import nbformat
    from jupyter_client.manager import start_new_kernel

    nb = nbformat.read(path, as_version=4)
    suggestions = find_suggestions(nb)
    km, kc = start_new_kernel(kernel_name="python3", cwd=os.path.dirname(os.path.abspath(path)))
    outcomes = []
    try:
        execute = kernel_executor(kc, timeout)
        for index, cell in enumerate(nb.cells):
            if _skipped(cell):
                continue
            outcomes += [replay(nb, s, execute) for s in suggestions if s.cell == index]
            error = execute(cell.source)
            if error:
                raise RuntimeError(f"{path}: cell {index} fails without any change: {error[0]}: {error[1]}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return outcomes


def main(argv=None):
    paths = (argv if argv is not None else sys.argv[1:])
    if not paths:
        print(__doc__)
        return 2
    status = 0
    for path in paths:
        for outcome in replay_notebook(path):
            problem = outcome.problem(budget_s())
            state = "skipped (slow)" if outcome.skipped else f"{outcome.seconds:.1f} s"
            print(f"{path}: {outcome.suggestion}  ->  {problem or 'ok'}  [{state}]")
            status |= bool(problem)
    return status


if __name__ == "__main__":
    sys.exit(main())
