"""docs/python.md's session, run as written (its code blocks in order, in a temporary
directory): arrays as data, a user space, a search, plots, load and predict."""
import re
from pathlib import Path

import matplotlib

DOC = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def test_the_notebook_session_of_docs_python_md_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    backend = matplotlib.get_backend()
    scope = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)
    assert matplotlib.get_backend() == backend  # no backend switched
    result = scope["result"]
    assert result.params <= 600 and result.run_dir == Path("runs/notebook")
    assert {tuple(m.arch.items()) for m in result.front} <= {tuple(a.items()) for a, _ in result.population}
    assert (tmp_path / "runs" / "notebook" / "front.png").stat().st_size > 0
    assert scope["accuracy"] > 0.6
