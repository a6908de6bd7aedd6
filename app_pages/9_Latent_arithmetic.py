"""Latent arithmetic (being built this session)."""
import streamlit as st

st.title("Latent arithmetic")
