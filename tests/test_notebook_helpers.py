"""hflib.notebook.recorded: the notebooks and their student copies find the same recordings."""
import json

import pytest

from hflib import notebook


@pytest.mark.parametrize("where", ["notebooks", "notebooks/student", "."])
def test_recorded_is_found_from_the_notebooks_and_the_student_copies(where, monkeypatch):
    from pathlib import Path

    root = Path(notebook.__file__).resolve().parents[1]
    monkeypatch.chdir(root / where)
    data = notebook.recorded("batch_study")
    assert data == json.loads((root / "notebooks" / "recorded" / "batch_study.json").read_text())
    assert {"command", "machine", "date", "hflib"} <= set(data["stamp"])


def test_a_missing_recording_names_what_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no recording nothing_here.json"):
        notebook.recorded("nothing_here")
