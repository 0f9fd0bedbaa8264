"""The notebook Voilà serves: written by code, so there is no second copy of the app's logic to drift."""

from __future__ import annotations

from pathlib import Path

import nbformat

from regexplain.io import write_text

TITLE = "# regexplain explorer\nMove λ along one component of the latent-space basis named below (PCA unless " \
        "another was asked for) and watch the decoded deformation of a validation subject: moving contour red, " \
        "warped contour gold, arrows the motion of the structure (or, on request, the sampling offsets), or the " \
        "same field as a warped grid or a Jacobian-determinant map; slices oriented as in a viewer (superior up, " \
        "anterior up in axial slices, radiological left/right)."

# The kernel only calls into the package: the page is the same code whether served or imported.
CODE = "from regexplain.app.page import explorer_page\n\nexplorer_page()"


def build_notebook(title: str = "regexplain explorer") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(TITLE), nbformat.v4.new_code_cell(CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["title"] = title  # Voilà's page title (the page renames the tab once it knows its basis)
    return nb


def write_notebook(directory: str | Path, name: str = "explorer.ipynb", *, title: str = "regexplain explorer"
                   ) -> Path:
    """Write the app notebook into ``directory`` and return its path."""
    path = Path(directory) / name
    write_text(path, nbformat.writes(build_notebook(title)))
    return path
