"""VAE Latent Explorer: run with `streamlit run app.py`.

The entry point only lists the pages (st.navigation), so the menu reads "Home" rather than the
file's name; each page is a script of its own in home.py and pages/ and runs alone under AppTest.
"""
import streamlit as st

import explorer  # noqa: F401 - imports the heavy libraries once, in one order, before any page runs
from explorer import timing

PAGES = [
    st.Page("home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Latent_map.py", title="Latent map", icon=":material/scatter_plot:", url_path="Latent_map"),
    st.Page("pages/2_Latent_grid.py", title="Latent grid", icon=":material/grid_on:", url_path="Latent_grid"),
    st.Page("pages/3_Interpolation.py", title="Interpolation", icon=":material/swap_horiz:",
            url_path="Interpolation"),
    st.Page("pages/4_Sampling.py", title="Sampling", icon=":material/casino:", url_path="Sampling"),
    st.Page("pages/5_Train.py", title="Train", icon=":material/model_training:", url_path="Train"),
    st.Page("pages/6_Compare_beta.py", title="Compare β", icon=":material/compare:", url_path="Compare_beta"),
    st.Page("pages/7_Upload.py", title="Upload", icon=":material/upload_file:", url_path="Upload"),
]

timing.run_page(st.navigation(PAGES))
