# hflib: two commands from a fresh clone —  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/[0-9][0-9]_*.ipynb)

.PHONY: setup data demo test test-fast notebooks lab student bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -e .
	@# outputs written into notebooks (autosave in a lecture) never show as changes: nbstripout as a git filter
	-git rev-parse --git-dir >/dev/null 2>&1 && $(BIN)/nbstripout --install --attributes .gitattributes \
		&& git config filter.nbstripout.clean "'$(abspath $(BIN))/python' -m nbstripout --keep-id" \
		&& git config filter.nbstripout.extrakeys metadata.language_info
	touch $(STAMP)

## MNIST once into ~/.cache/hflib/mnist, SHA-256 verified (or set HFLIB_DATA_DIR to a folder of IDX files)
data: setup
	$(BIN)/python -m hflib data

## The main job: HF vs SGD on the report's sine task; prints a table, saves runs/demo/*.png
demo: setup
	$(BIN)/python -m hflib demo --out runs/demo

## The whole test suite: library tests, notebooks under nbval (quick mode), student copies, browser test
test: setup
	HFLIB_QUICK=1 $(BIN)/python -m pytest tests $(NOTEBOOKS) --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider

## Library tests only (no notebooks, no browser)
test-fast: setup
	HFLIB_QUICK=1 $(BIN)/python -m pytest tests -m "not browser" -p no:cacheprovider

lab: setup
	$(BIN)/jupyter lab notebooks/00_index.ipynb

student: setup
	$(BIN)/python tools/student_copies.py

bench: setup
	$(BIN)/python benchmarks/bench_products.py

clean:
	rm -rf $(VENV) runs test-artifacts .pytest_cache
