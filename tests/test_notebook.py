"""notebooks/quickstart.ipynb: committed without outputs, and runs top to bottom on a small config.

The run executes the notebook with nbclient in a temporary folder (nothing lands in the repository), on a
kernel of the interpreter running the tests, with the small parameters of :data:`SMALL` in a cell inserted
after the notebook's ``parameters`` cell (as papermill does), and a last cell that reports what it built.
"""

from __future__ import annotations

import ast
import copy
import json
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO, find_ml100k

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
# A kernelspec the test writes: this interpreter, whatever other kernels are installed.
KERNEL = "tfrs-movies-tests"

# A small run: two epochs of small vectors, short lists, no download, no TensorBoard server.
SMALL = {"EPOCHS": 2, "EMBEDDING_DIM": 16, "K": 5, "DOWNLOAD": False, "OPEN_TENSORBOARD": False}

# What the executed notebook built, printed as one JSON line by a cell appended after the last one.
REPORT = """
import json as _json
import sys as _sys

print("REPORT " + _json.dumps({
    "executable": _sys.executable,
    "data": DATA,
    "epochs_run": len(two_tower.model.history["loss"]),
    "table_rows": table.index.tolist(),
    "table_finite": bool(table.notna().all().all()),
    "same_split": bool(same_split),
    "recommended": len(recommended),
    "served": len(served.frame),
    "served_titles": bool(served.frame["title"].notna().all()),
    "run_dir": str(two_tower.run_dir.resolve()),
    "pngs": sorted(p.name for p in two_tower.run_dir.glob("*.png")),
}))
"""


def unstripped_cells(notebook: nbformat.NotebookNode) -> list[str]:
    """The ids of the code cells that hold outputs or an execution count (both stay out of git)."""
    return [
        cell.get("id", str(at))
        for at, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]


def parameters_cell(notebook: nbformat.NotebookNode) -> int:
    """The position of the cell tagged ``parameters`` (there is exactly one)."""
    found = [at for at, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged 'parameters', found {len(found)}"
    return found[0]


def with_parameters(notebook: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with ``values`` assigned in a cell right after its parameters cell."""
    out = copy.deepcopy(notebook)
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    out.cells.insert(parameters_cell(notebook) + 1, injected)
    return out


def read_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_committed_notebook_has_no_outputs():
    dirty = unstripped_cells(read_notebook())
    assert not dirty, (
        f"{NOTEBOOK.name} is committed with outputs or execution counts in cells {dirty}: clear them "
        "(Jupyter: Edit > Clear Outputs of All Cells, then save) before committing"
    )


def test_the_output_check_catches_outputs_and_counts():
    notebook = read_notebook()
    code = [at for at, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    with_output, counted = copy.deepcopy(notebook), copy.deepcopy(notebook)
    with_output.cells[code[0]].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    counted.cells[code[-1]].execution_count = 7
    assert unstripped_cells(with_output) == [notebook.cells[code[0]].id]
    assert unstripped_cells(counted) == [notebook.cells[code[-1]].id]


def test_parameters_cell_sets_every_name_the_tests_override():
    notebook = read_notebook()
    tree = ast.parse(notebook.cells[parameters_cell(notebook)].source)
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}
    assert set(SMALL) <= assigned, f"the parameters cell lacks {sorted(set(SMALL) - assigned)}"


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nbclient import NotebookClient

    # The kernel: this interpreter (a kernelspec found first on JUPYTER_PATH), its own IPython folder,
    # matplotlib's inline backend (MPLBACKEND=Agg from the test command would draw nothing), the data.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    ml100k = find_ml100k()
    if ml100k is not None:
        monkeypatch.setenv("TFRS_MOVIES_DATA", str(ml100k.parent))
    work = tmp_path / "work"
    work.mkdir()

    notebook = with_parameters(read_notebook(), SMALL)
    notebook.cells.append(nbformat.v4.new_code_cell(REPORT))
    client = NotebookClient(
        notebook, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # a failing cell raises CellExecutionError, naming the cell and the error

    lines = [out.get("text", "") for out in notebook.cells[-1].outputs if out.output_type == "stream"]
    report = json.loads("".join(lines).split("REPORT ", 1)[1])
    assert report["executable"] == sys.executable
    assert report["data"] == ("ml-100k" if ml100k is not None else "synthetic")
    assert 1 <= report["epochs_run"] <= SMALL["EPOCHS"]
    assert report["table_rows"] == ["two-tower (TFRS)", "EASE", "popularity"]
    assert report["table_finite"] and report["same_split"]
    assert report["recommended"] == report["served"] == SMALL["K"]
    assert report["served_titles"]
    assert Path(report["run_dir"]).is_relative_to(work.resolve())  # nothing written into the repository
    assert report["pngs"] == ["recommendations.png", "training_curves.png"]
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2, f"expected the two figures inline, found {len(images)} images"
