"""VAE Latent Explorer: the script each visitor's session runs (app.py is the server around it).

It lists the pages (st.navigation), so the menu reads "Home" rather than the file's name; each page is a script of its own in home.py and app_pages/ and runs alone under AppTest.
The folder is deliberately not called pages/: Streamlit treats a pages/ folder as the legacy
multipage app until some session has run st.navigation, so on a fresh server a link straight to a
page ran that page without this router (another menu, no URL token, no start-up imports).
"""
# The libraries a chart needs, in the order `explorer` imports them (see explorer/__init__.py):
# on a fresh server the start-up thread is still importing PyTorch when the first visitor
# arrives, and these are ready well before it.
import numpy  # noqa: F401, I001 - the order matters
import pandas  # noqa: F401
import PIL.Image  # noqa: F401
import PIL.PngImagePlugin  # noqa: F401
import plotly.graph_objects  # noqa: F401
import plotly.io  # noqa: F401
import streamlit as st

PAGES = [
    st.Page("home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/1_Latent_map.py", title="Latent map", icon=":material/scatter_plot:", url_path="Latent_map"),
    st.Page("app_pages/2_Latent_grid.py", title="Latent grid", icon=":material/grid_on:", url_path="Latent_grid"),
    st.Page("app_pages/3_Interpolation.py", title="Interpolation", icon=":material/swap_horiz:",
            url_path="Interpolation"),
    st.Page("app_pages/4_Sampling.py", title="Sampling", icon=":material/casino:", url_path="Sampling"),
    st.Page("app_pages/9_Latent_arithmetic.py", title="Latent arithmetic", icon=":material/add_circle:",
            url_path="Latent_arithmetic"),
    st.Page("app_pages/10_True_posterior.py", title="True posterior", icon=":material/functions:",
            url_path="True_posterior"),
    st.Page("app_pages/11_Few_labels.py", title="Few labels", icon=":material/label:", url_path="Few_labels"),
    st.Page("app_pages/5_Train.py", title="Train", icon=":material/model_training:", url_path="Train"),
    st.Page("app_pages/6_Compare_beta.py", title="Compare β", icon=":material/compare:", url_path="Compare_beta"),
    st.Page("app_pages/7_Upload.py", title="Upload", icon=":material/upload_file:", url_path="Upload"),
    st.Page("app_pages/8_Class_gallery.py", title="Class gallery", icon=":material/photo_library:",
            url_path="Class_gallery"),
]

# The tab's icon, before the menu: the browser otherwise shows a page's menu icon (:material/...)
# as the tab's icon, fetched from fonts.gstatic.com (nothing offline), until the page's own
# st.set_page_config arrives with its emoji.
st.set_page_config(page_icon="🫧")
page = st.navigation(PAGES)

# The browser loads plotly.js (4.6 MB) only when a page first sends a chart, and parsing it takes
# a second or more. On a page with charts, an empty, hidden element sent before anything else
# starts that load at once, while the server runs the page. It sits in the sidebar, so that the
# selectors of a page's charts ([data-testid=stMain] ...) never meet it. The charts are drawn with
# the app's own copy of plotly.js (explorer/charts.py): the preload loads that one, or Streamlit's
# where the app's cannot be served. (Importing explorer.charts imports `explorer`: on a fresh
# server the preload then waits for the start-up thread's imports, as the page does anyway.)
# The home page has no plotly chart (its figures are pictures), so a new visitor's first page
# draws without waiting for plotly; the first chart page opened from it loads it then.
if page.url_path:
    with st.sidebar, st.container(key="plotly_preload"):
        st.html("<style>.st-key-plotly_preload {display: none}</style>")
        from explorer import charts  # noqa: E402
        if not charts.preload():
            st.plotly_chart({"data": [{"type": "scatter", "x": [], "y": []}]}, key="plotly_preload_chart")

import explorer  # noqa: E402, F401 - imports the heavy libraries once, in one order, before any page runs
from explorer import timing, training  # noqa: E402

training.keep_owner_in_url()   # a refresh on any page finds this session's training job again
timing.run_page(page)
