"""The app layer's Streamlit helpers, one job a module: the data choice (data_choice), what a server
shares (server), the visitor's identity (visitor), the working specs (working_specs), share links
(share_links), drafts across reloads (session_drafts), the Train form's widget memory (widget_memory)
and the shared styling (style). Only these, app.py and pages/ import streamlit."""
