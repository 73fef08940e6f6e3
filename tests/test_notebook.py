"""notebooks/explore.ipynb runs headless, top to bottom, against a demo lake, and its image
cells draw images: executed with nbclient in a kernel of the project's environment."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"
# Cells whose output must hold a picture, by a phrase of their source.
IMAGE_CELLS = ("class_samples", "explore.quarantined", "confusion_matrix(ev)", "group_accuracy(ev",
               "explore.misclassified")

pytestmark = pytest.mark.slow


def _parameters(lake) -> str:
    overrides = [f"lake_root={lake.profile.lake_root}", "quality.group_column=scan_batch"]
    return f"PROFILE = 'test'\nOVERRIDES = {overrides!r}"


def test_the_explore_notebook_runs_clean_against_the_demo_lake_and_draws_its_images(observed_lake, tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from PIL import Image

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = _parameters(observed_lake)

    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    for phrase in IMAGE_CELLS:
        (cell,) = [c for c in code if phrase in c.source]
        pictures = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pictures, f"the cell with {phrase!r} drew no image"
        image = Image.open(io.BytesIO(base64.b64decode(pictures[-1])))
        assert image.width > 200 and image.height > 100
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "test accuracy" in text and "largest gap between scan_batch groups" in text
    (lineage,) = [c for c in code if "explore.lineage" in c.source]
    assert "silver.features" in lineage.outputs[0]["data"]["text/plain"]
    scored = [c for c in code if "predicted_label" in c.source][0]
    assert "predicted_score" in scored.outputs[0]["data"]["text/plain"]
