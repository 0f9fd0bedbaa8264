"""The explorer page: ``build_explorer`` (the notebooks' widget) plus a per-component summary, or a readable
message when the decomposition cannot be opened. The app notebook's only code cell calls
:func:`explorer_page`; nothing here is specific to Voilà.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from regexplain.app import ENV_BASIS, ENV_CHECKPOINT, ENV_DATA, ENV_DECOMPOSITION, ENV_READY, ENV_SUBJECT

AFFINE_PARTS = ("translation", "rotation", "scale", "shear", "nonaffine")
#: Strength (σ units) at which a component's decoded deformation is summarised.
SUMMARY_LAM = 1.0


def explorer_page(decomposition: str | None = None, *, checkpoint: str | None = None,
                  data: str | None = None, subject: str | None = None, basis: str | None = None,
                  query: str | None = None):
    """The page's widget. Arguments default to the environment variables the launcher sets; ``query`` (by
    default Voilà's ``QUERY_STRING``, the page URL's query) restores a linked state.

    Served with Voilà's preheated kernels (:mod:`regexplain.app.server`), everything that does not depend on
    the page's URL (imports, Voilà's request helper included, model, data, the launch basis, the default page
    with its first picture) runs before anyone asks for the page; the kernel then says so
    (:data:`regexplain.app.ENV_READY`), waits for the request (``voila.utils.wait_for_request``) and returns the
    default page, or builds the one the URL asks for.
    """
    import time

    started = time.perf_counter()
    from regexplain.app.inputs import ExplorerUnavailable, load_inputs, unavailable

    path = decomposition or os.environ.get(ENV_DECOMPOSITION)
    launch = {"checkpoint": checkpoint or os.environ.get(ENV_CHECKPOINT), "data": data or os.environ.get(ENV_DATA)}
    subject = subject or os.environ.get(ENV_SUBJECT)
    basis = basis or os.environ.get(ENV_BASIS)
    try:
        prebuilt = None
        try:  # before the request: the launch's defaults
            inputs = load_inputs(path, **launch, subject=subject, basis=basis)
            if query is None and _preheated():  # the default page, built while nobody waits
                prebuilt = _explorer(inputs, "")
        except ExplorerUnavailable as e:
            inputs = e  # shown once the page is asked for (a ?subject= may still fix it)
        if query is None:
            wait = _request_waiter()
            _announce_ready(time.perf_counter() - started)
            wait()
            query = os.environ.get("QUERY_STRING", "")
        if prebuilt is not None and not query.strip("?&"):
            _trim()
            return prebuilt
        if prebuilt is not None:
            prebuilt.close()
        asked = parse_qs(query)
        wanted = asked.get("subject", [None])[-1]
        in_basis = asked.get("basis", [None])[-1]
        if isinstance(inputs, Exception) or (in_basis and in_basis != _basis(inputs.decomposition)):
            inputs = load_inputs(path, **launch, subject=wanted or subject, basis=in_basis or basis)
        if wanted and wanted in inputs.subjects:
            inputs = replace(inputs, subject=wanted, image=inputs.subjects[wanted][0], label=inputs.subjects[wanted][1])
        elif wanted:
            from regexplain.app.inputs import pick_subject

            pick_subject(list(inputs.subjects), wanted)  # raises the readable "no such subject"
        page = _explorer(inputs, query)
        _trim()
        return page
    except ExplorerUnavailable as e:
        return error_widget(str(e))
    except Exception as e:  # noqa: BLE001 - a served page shows one readable line, never a traceback
        return error_widget(str(unavailable(path, f"{type(e).__name__}: {e}",
                                            "Check the decomposition and its checkpoint.")))


def _trim() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise): loading the data and decoding the
    first fields leave tens of MB behind in every kernel."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _preheated() -> bool:
    """True in a Voilà kernel executed ahead of its page (``--VoilaConfiguration.preheat_kernel``)."""
    return os.environ.get("VOILA_PREHEAT", "False") != "False"


def _announce_ready(seconds: float) -> None:
    """Under a preheated kernel, append ``"<pid> <seconds>"`` to the launcher's ready file: the page is built
    and the first browser to ask gets it at once."""
    path = os.environ.get(ENV_READY)
    if not (path and _preheated()):
        return
    try:
        with open(path, "a", encoding="utf-8") as f:  # one short append per kernel: no partial lines
            f.write(f"{os.getpid()} {seconds:.2f}\n")
    except OSError:  # the launcher's folder went away: nobody is waiting for the line
        pass


def _request_waiter():
    """What blocks a preheated Voilà kernel until a browser asks for the page (then ``QUERY_STRING`` is set);
    anywhere else a function that returns at once.

    ``voila.utils`` is imported here, before the kernel says it is ready: it pulls in jupyter_server and
    jupyterlab_server (2.5 s of CPU, 4.7 s on two busy cores), and imported once the request had arrived it
    held the page back by that much, and by up to 10 s when the next pool kernel started beside it."""
    if not _preheated():
        return lambda: None
    from voila.utils import wait_for_request

    def wait() -> None:
        os.environ.pop("QUERY_STRING", None)
        wait_for_request()
        if "QUERY_STRING" not in os.environ:
            # No page came: Voilà is shutting this kernel down (its websocket closed). Going on would answer
            # the execution on closed sockets, a `zmq.error.ZMQError` traceback on the launcher's terminal.
            os._exit(0)

    return wait


def _basis(dec) -> str:
    return str(dec.meta.get("basis", "pca"))


def page_title(run: str, basis: str) -> str:
    """The browser tab's title: the run and the basis the page shows."""
    return f"{run} · {basis} · regexplain explorer"


def error_widget(message: str):
    import ipywidgets as W

    box = W.HTML(f'<div style="border:1px solid #c33;padding:1em;max-width:60em">'
                 f'<h3 style="color:#c33;margin-top:0">Explorer unavailable</h3>'
                 f'<p>{_markup(message)}</p></div>')
    box.add_class("explorer-error")
    return box


def _markup(message: str) -> str:
    # Escape everything, then let `code` spans read as code.
    parts = html.escape(message).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _explorer(inputs, query: str = ""):
    import ipywidgets as W

    basis = _basis(inputs.decomposition)
    header = W.HTML(f"<p>run <b>{html.escape(inputs.run_name)}</b> &middot; basis <b>{html.escape(basis)}</b>"
                    f" &middot; K = {inputs.decomposition.n_components} &middot; validation subjects: "
                    f"{len(inputs.subjects)} &middot; checkpoint <code>{html.escape(str(inputs.checkpoint))}</code>"
                    "</p>")
    header.add_class("explorer-header")
    _set_title(page_title(inputs.run_name, basis))
    panel = explorer_panel(inputs.model, inputs.decomposition, inputs.subjects, inputs.subject, query=query,
                           axcodes=inputs.axcodes)
    return W.VBox([header, *panel.children])


def _set_title(title: str) -> None:
    """Name the browser tab after the run and basis (the launcher's notebook title says the launch basis;
    a ``?basis=`` page names its own)."""
    try:
        from IPython import get_ipython
        from IPython.display import Javascript, display
    except ImportError:
        return
    if get_ipython() is not None:  # a kernel with a front end; a plain script has no tab to name
        display(Javascript(f"document.title = {json.dumps(title)};"))


def explorer_panel(model, decomposition, subjects: dict, subject: str, *, query: str = "",
                   axcodes: tuple[str, str, str] | None = None):
    """The explorer (notebook 04 and the app): the widget, beside it each shown component's explained
    variance and affine content, below it a link that reopens this view (``?component=..&lam=..``).

    Args:
        subjects: id -> (image, label) of the subjects the menu offers; ``subject`` is shown first.
        query: a URL query (the app passes the page's) restoring a linked state.
        axcodes: the images' orientation (:attr:`regexplain.data.pairs.VolumeSet.axcodes`) for the
            pictures' S/I, A/P, L/R letters.
    """
    import ipywidgets as W

    from regexplain.viz.widgets import build_explorer, parse_query, query_notes, state_query

    kw = parse_query(query, decomposition.n_components)
    kw["subject"] = subject if kw.get("subject") not in subjects else kw["subject"]
    explorer = build_explorer(model, decomposition, *subjects[kw["subject"]], subjects=subjects, axcodes=axcodes,
                              **kw)
    summary = W.HTML()
    summary.add_class("component-summary")
    link = W.HTML()
    link.add_class("permalink")
    describe = _summariser(model, decomposition)

    def update(state) -> None:
        summary.value = describe(state.shown(), state.label)
        # A relative link keeps the server's address and path: open or share it to come back here.
        basis = decomposition.meta.get("basis", "pca")
        query = state_query(state) + ("" if basis == "pca" else f"&basis={basis}")
        link.value = f'<a href="?{html.escape(query)}">link to this view</a>'

    explorer.on_change.append(update)
    update(explorer.explorer_state)
    notes = query_notes(query, explorer.explorer_state)   # a link's λ that could not be shown as asked
    note = [W.HTML(f"<p style='color:#a60'>{html.escape('; '.join(notes))}</p>")] if notes else []
    for n in note:
        n.add_class("link-note")
    return W.VBox([W.VBox([explorer, summary]), link, *note])


def _summariser(model, dec):
    """(components shown, subject's label) -> HTML: explained variance and affine content of each
    (cached per component and subject)."""
    ratio = np.asarray(dec.explained_variance_ratio)
    cumulative = np.cumsum(ratio)
    cache: dict[tuple[int, int], dict[str, Any] | str] = {}

    def one(i: int, label) -> str:
        key = (i, id(label))
        if key not in cache:
            cache[key] = _affine(model, dec, i, _structure_mask(label))
        rows = (f"<tr><td>explained variance</td><td>{ratio[i]:.1%}</td></tr>"
                f"<tr><td>cumulative (1..{i + 1})</td><td>{cumulative[i]:.1%}</td></tr>")
        content = cache[key]
        if isinstance(content, str):
            affine = f"<p>affine content unavailable: {html.escape(content)}</p>"
        else:
            affine = "".join(f"<tr><td>{k}</td><td>{content[k]:.0%}</td></tr>" for k in AFFINE_PARTS)
        return (f"<h4>Component {i + 1}</h4><table>{rows}</table>"
                f"<p style='margin:0.3em 0 0'>affine content of D({SUMMARY_LAM:g}σ·u<sub>{i + 1}</sub>) &minus; D(0)"
                f"</p><table>{affine}</table>")

    def describe(components, label) -> str:
        return ("<div style='display:flex;gap:2.5em;flex-wrap:wrap'>"
                + "".join(f"<div>{one(i, label)}</div>" for i in components)
                + "</div><p style='font-size:13px'>affine content: energy shares of the displacement over the "
                  "structure</p>")

    return describe


def _structure_mask(label: np.ndarray) -> np.ndarray | None:
    mask = np.asarray(label) > 0
    return mask if mask.sum() >= 8 else None  # too few voxels for an affine fit: use the whole volume


def _affine(model, dec, i: int, mask) -> dict[str, Any] | str:
    from regexplain.analysis.affine import affine_content
    from regexplain.analysis.latent import component_displacements

    disp = component_displacements(model, dec, SUMMARY_LAM, "sigma", [i], relative_to_zero=True)[0]
    try:
        return affine_content(disp, mask)
    except ValueError as e:  # degenerate mask: say so in the panel instead of failing the page
        return str(e)
