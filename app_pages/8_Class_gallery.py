"""Class gallery: every model saved in the user folder, grouped by the run that trained it, with its
scores and what it draws from the prior. The work lives in explorer/gallery.py."""
import streamlit as st

from explorer import gallery, models

st.set_page_config(page_title="Class gallery · VAE Latent Explorer", page_icon="🖼️", layout="wide")
st.title("Class gallery")
st.caption("Every model saved in the user folder, one group per training run or β sweep (as each file "
           "records it), newest first: its β, its stored test loss, KL and k-NN accuracy (— where the file "
           f"has no such score), and {gallery.N_SAMPLES} images it decodes from the same random codes z ~ N(0, I).")

window = st.selectbox("Made in the", list(gallery.WINDOWS), index=2, key="cg_window")
mine = [i for i in models.list_models() if i.get("source") == "yours"]
shown = gallery.recent(mine, gallery.WINDOWS[window])
if not shown:
    older = f" None of the {len(mine)} models there was made in the {window}: choose a longer time." if mine else ""
    st.info(f"No models to show yet.{older}\n\nModels get here when they are saved on this server: "
            "train one on the **Train** page and save it, or run a **β sweep** there, which saves every "
            "model it trains.", icon=":material/photo_library:")
    st.stop()

for key, members in gallery.grouped(shown):
    st.subheader(gallery.family_label(members))
    newest = max(gallery.created(i) for i in members)
    st.caption(f"Trained by {gallery.owner(members)} · run group {gallery.run_group(members)} · "
               f"last saved {gallery.ago(newest)}")
    st.dataframe(gallery.table(members), hide_index=True, key=f"cg_table_{key}")
    for info in members:
        strip = gallery.strip(info)
        if strip is None:
            st.caption(f"{info['name']}: the file could not be read again (removed or damaged).")
        else:
            st.image(strip, caption=f"{info['name']}: decoded from z ~ N(0, I)")
