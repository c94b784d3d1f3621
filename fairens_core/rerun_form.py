"""The live form at the end of each chapter: change its parameters, re-run it, see the new verdict.

In JupyterLab (or any front end with ipywidgets), the chapter's last cell shows one text box per
parameter of its ``parameters`` cell, prefilled with the default's source text, and a button. The
button executes the chapter again with papermill, in a temporary folder and with only the changed
parameters, reading every run already trained from the record cache; then it shows the new run's
generated prose, claims table and charts below the form. The chapter itself is not changed.

A notebook stored or rendered without a live kernel (the book, a committed chapter) keeps only the
Markdown note of the bundle: ``book.run_chapter`` drops widget views and widget state.

    RerunForm("bottom_k.ipynb")          # the chapter's closing cell (its own file)
"""

from __future__ import annotations

import ast
import html
import tempfile
import threading
from pathlib import Path

import ipywidgets as widgets
import nbformat
import papermill as pm
from IPython.display import display

from .book import WIDGET_VIEW
from .claims import MIME_TYPE as CLAIMS_MIME
from .rerun_box import parameters, parameters_cell

SHOWN_MIME = (CLAIMS_MIME, "application/vnd.vegalite.v5+json", "application/vnd.vegalite.v6+json",
              "text/markdown")


def note(chapter: str) -> str:
    """The form's static stand-in (the book, a stored notebook): what the live form does."""
    return ("**Try another setting.** Run this chapter in JupyterLab and this cell shows a form over its "
            "parameters: change any of them, press *Re-run*, and the chapter runs again with them (runs "
            "already trained come from the record cache), showing its new prose, claims and charts here. "
            f"To see first what a setting will cost: `python -m fairens_core plan --profile default "
            f"--chapters {chapter} -p NAME VALUE`.")


class RerunForm:
    """A form over the parameters of the chapter `notebook` that re-runs it with papermill."""

    def __init__(self, notebook: str | Path, kernel: str = "python3"):
        self.notebook = Path(notebook).resolve()
        self.kernel = kernel
        cell = parameters_cell(nbformat.read(str(self.notebook), as_version=4))
        if cell is None:
            raise ValueError(f"notebook={str(notebook)!r} has no cell tagged 'parameters' to build a form from")
        self.parameters = parameters(cell.source)
        self.fields = {p.name: widgets.Text(value=p.default, description=p.name, tooltip=p.description,
                                            layout=widgets.Layout(width="95%"))
                       for p in self.parameters}
        self.button = widgets.Button(description="Re-run", button_style="primary", icon="play")
        self.status = widgets.HTML()
        self.results = widgets.Output()
        self.button.on_click(lambda _: threading.Thread(target=self.rerun, daemon=True).start())
        self.widget = widgets.VBox([widgets.HTML(f"<b>Re-run {self.notebook.stem} with other parameters</b> "
                                                 "(Python literals; None: the profile's choice)"),
                                    *self.fields.values(), self.button, self.status, self.results])

    def changed(self) -> dict:
        """The parameters whose text differs from the default, parsed as Python literals."""
        out = {}
        for p in self.parameters:
            text = self.fields[p.name].value.strip()
            if text == p.default.strip():
                continue
            try:
                out[p.name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"{p.name}={text!r} is not a Python literal (e.g. 5, 0.1, \"cpu\", [1, 2], None)")
        return out

    def rerun(self) -> Path | None:
        """Execute the chapter with the changed parameters and show its results; returns the
        executed notebook's path (None when it failed; the status line says why)."""
        self.button.disabled = True
        try:
            changes = self.changed()
            said = ", ".join(f"{k}={v!r}" for k, v in changes.items()) or "its defaults"
            self.status.value = f"Running {self.notebook.stem} with {said} ..."
            out = Path(tempfile.mkdtemp(prefix="fairens-rerun-")) / self.notebook.name
            pm.execute_notebook(str(self.notebook), str(out), parameters=changes or None, kernel_name=self.kernel,
                                cwd=str(self.notebook.parent), progress_bar=False, log_output=False)
        except (ValueError, pm.PapermillExecutionError) as err:
            message = f"{err.ename}: {err.evalue}" if isinstance(err, pm.PapermillExecutionError) else str(err)
            self.status.value = f"<span style='color:#b3261e'>Not run: {_escape(message)}</span>"
            return None
        finally:
            self.button.disabled = False
        self.status.value = f"Done: {self.notebook.stem} with {_escape(said)} (written to {_escape(str(out))})."
        self.show_results(out)
        return out

    def show_results(self, executed: str | Path) -> None:
        """Show the generated prose, claims tables and charts of an executed chapter below the form."""
        self.results.clear_output()
        for bundle in results(executed):
            self.results.append_display_data(_Raw(bundle))

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        bundle = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
        # The note stands in for the form wherever widgets are not drawn; as the plain text too,
        # so that a saved chapter does not carry a memory address that changes at every run.
        bundle["text/markdown"] = bundle["text/plain"] = note(self.notebook.stem)
        return bundle


def results(executed: str | Path) -> list[dict]:
    """The output bundles of an executed chapter worth showing after a re-run: its generated
    Markdown, claims tables and charts, in order (each with its plain-text fallback)."""
    nb = nbformat.read(str(executed), as_version=4)
    shown = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if any(m in data for m in SHOWN_MIME) and WIDGET_VIEW not in data:
                shown.append({k: v for k, v in data.items() if k in SHOWN_MIME or k in ("text/html", "text/plain")})
    return shown


class _Raw:
    """A stored output bundle, displayed as it is."""

    def __init__(self, bundle: dict):
        self.bundle = bundle

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.bundle


def _escape(text: str) -> str:
    return html.escape(text)


def offer(notebook: str | Path) -> None:
    """Display the form for `notebook` (the chapter's closing cell)."""
    display(RerunForm(notebook))
