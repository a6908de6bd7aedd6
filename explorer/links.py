"""Shareable views: the models and a page's settings live in the address, so a reload or a link
opened in another browser shows the same view.

A page calls `restore(key, cast)` before drawing a widget: on the session's first run of that page,
a value in the address (?key=value) that parses and lies in the widget's range becomes the widget's
value. After drawing it, `publish(key, value)` writes the value back into the address. The sidebar
does the same for the dataset and the two models. `sidebar_link()` shows the address of the
current view for copying; it never carries the ?trainer= token of a training job.
"""
from __future__ import annotations

import html
from typing import Callable, Optional
from urllib.parse import urlencode

import streamlit as st

PRIVATE = ("trainer",)          # parameters that belong to one student, never put in a shared link


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """A parser for a whole number from lo to hi (ValueError outside)."""
    def parse(text: str) -> int:
        v = int(text)
        if not lo <= v <= hi:
            raise ValueError(f"{v} is outside {lo}..{hi}")
        return v
    return parse


def float_in(lo: float, hi: float, step: float) -> Callable[[str], float]:
    """A parser for a number from lo to hi, on the slider's steps (ValueError outside)."""
    def parse(text: str) -> float:
        v = float(text)
        if not lo <= v <= hi:
            raise ValueError(f"{v} is outside {lo}..{hi}")
        return round(lo + round((v - lo) / step) * step, 10)
    return parse


def one_of(options) -> Callable[[str], object]:
    """A parser for one of the options, matched by its text."""
    by_text = {str(o): o for o in options}

    def parse(text: str):
        return by_text[text]       # KeyError: not an option
    return parse


def restore(key: str, cast: Callable[[str], object]) -> None:
    """Before the widget `key` is drawn: on this session's first run of it, take its value from the
    address when it parses (a link or a reload), else leave the widget's own default."""
    done = st.session_state.setdefault("_links_restored", set())
    if key in done:
        return
    done.add(key)
    raw = st.query_params.get(key)
    if raw is None:
        return
    try:
        st.session_state[key] = cast(raw)
    except (ValueError, TypeError, KeyError):
        pass                        # a damaged or outdated link: the default stands


def publish(key: str, value) -> None:
    """After the widget is drawn: its value into the address (only when it changed)."""
    text = str(value)
    if st.query_params.get(key) != text:
        st.query_params[key] = text


def view_url() -> Optional[str]:
    """The address of this view without private parameters, or None when the server cannot say."""
    try:
        base = str(st.context.url or "").split("?")[0]
    except Exception:               # noqa: BLE001 - an old or bare runtime
        return None
    if not base:
        return None
    params = {k: v for k, v in st.query_params.items() if k not in PRIVATE}
    return base + ("?" + urlencode(params) if params else "")


# The address in a read-only field with a Copy button. st.code would do the same, but the
# browser loads its syntax highlighter (1.5 MB of script) on a tab's first press: 0.5-1 s on this
# machine's Chromium (bench/bench_browser.py, view_link). The script only reads the field it sits
# beside; the address is escaped into an attribute and never into the script. Without a clipboard
# (a page served over plain http to another machine) the text is selected for Ctrl+C instead.
_COPY_JS = """<script>
for (const box of document.querySelectorAll('.vae-link:not([data-wired])')) {
  box.dataset.wired = '1';
  const field = box.querySelector('input'), button = box.querySelector('button');
  field.addEventListener('focus', () => field.select());
  button.addEventListener('click', async () => {
    field.focus(); field.select();
    let done = false;
    try { await navigator.clipboard.writeText(field.value); done = true; }
    catch (e) { try { done = document.execCommand('copy'); } catch (e2) { done = false; } }
    button.textContent = done ? 'Copied' : 'Press Ctrl+C';
  });
}
</script>"""
_LINK_STYLE = ("<style>.vae-link{display:flex;gap:.4rem;align-items:center}"
               ".vae-link input{flex:1;min-width:0;font-family:monospace;font-size:.8rem;padding:.35rem .5rem;"
               "border:1px solid rgba(49,51,63,.2);border-radius:.5rem;background:rgba(240,242,246,.6)}"
               ".vae-link button{font-size:.8rem;padding:.35rem .6rem;border:1px solid rgba(49,51,63,.2);"
               "border-radius:.5rem;background:white;cursor:pointer}</style>")


def link_html(url: str) -> str:
    """The link box's HTML for url: a read-only field (the address, escaped) and a Copy button."""
    return (_LINK_STYLE + '<div class="vae-link"><input type="text" readonly aria-label="Address of this view" '
            f'value="{html.escape(url, quote=True)}"><button type="button">Copy</button></div>' + _COPY_JS)


def sidebar_link() -> None:
    """At the foot of the sidebar, called last on a page: a button that shows the address of the
    view as it is now (a press reruns the page, so settings moved in a fragment are included)."""
    with st.sidebar:
        if st.button("Link to this view", key="view_link", icon=":material/link:",
                     help="Shows an address that opens this page with these models and settings, in any browser."):
            url = view_url()
            if url:
                with st.container(key="view_link_box"):
                    st.html(link_html(url), unsafe_allow_javascript=True)
                st.caption("Copy it with the button at its right. Press again after changing a setting.")
            else:
                st.caption("The server cannot tell its own address here: copy the one in the address bar.")
