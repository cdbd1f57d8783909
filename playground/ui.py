"""What the Streamlit pages share: cached data and analysis, the launcher of training
workers, the visitor's identity, the working specs in session state, and the share link.
The only module of the package, besides app.py, that imports streamlit."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import zlib

import streamlit as st

from .analysis import Analysis, analyze
from .arch import Net
from .augment import AugSpec, default_aug
from .data import DataError, Dataset, load_in_subprocess, resolve_source
from .jobs import Launcher
from .presets import preset_net
from .serde import SpecError
from .store import RunStore

DEFAULT_PRESET = "fast"


@st.cache_resource(show_spinner="Loading the dataset (decoding it the first time takes about half a minute)…")
def cached_dataset(source: str) -> Dataset:
    """One copy per data source for the whole server (all sessions share it). The training
    images stay on disk, memory-mapped: the server shows a few, the workers train on them."""
    return load_in_subprocess(source)


def data_source() -> str:
    return st.session_state.setdefault("data_source", resolve_source(None))


def dataset(show_error: bool = True) -> Dataset | None:
    """The dataset, or None with a clear message on the page (never a traceback)."""
    try:
        return cached_dataset(data_source())
    except DataError as e:
        if show_error:
            st.error(f"**No dataset available.** {e}")
        return None


@st.cache_resource
def launcher() -> Launcher:
    """One per server: it starts the workers and keeps their handles; the store holds the rest."""
    return Launcher()


def store() -> RunStore:
    return launcher().store


@st.cache_data(max_entries=256, show_spinner=False)
def _analysis(spec_json: str) -> Analysis:
    return analyze(Net.from_json(spec_json))


def analysis(net: Net) -> Analysis:
    return _analysis(net.to_json(None))


OWNER_COOKIE = "playground_owner"


def owner() -> str:
    """Who this visitor is, for run ownership in hosted mode: a random token kept in a cookie,
    so a reload of the tab (a new Streamlit session) is still the same visitor. The store
    keeps only its hash. app.py calls this on every run: a new token's cookie is written on
    every run of the session that made it (a run can be cut short before the browser sees it)."""
    if "owner" not in st.session_state:
        token = st.context.cookies.get(OWNER_COOKIE)  # sent by the browser: anything at all
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
            token = secrets.token_hex(16)
            st.session_state["_new_owner_token"] = token
        st.session_state["owner"] = hashlib.sha256(token.encode()).hexdigest()[:32]
    if token := st.session_state.get("_new_owner_token"):
        st.html(f"<script>document.cookie = '{OWNER_COOKIE}={token}; path=/; max-age=31536000; SameSite=Strict';"
                f"</script>", unsafe_allow_javascript=True)
    return st.session_state["owner"]


def _encode(obj: dict) -> str:
    return base64.urlsafe_b64encode(zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 9)).decode()


def _decode(text: str) -> dict:
    return json.loads(zlib.decompress(base64.urlsafe_b64decode(text.encode())).decode())


def restore_from_link() -> None:
    """Apply ?arch=…&aug=… once per session; a malformed link is reported, not fatal."""
    if st.session_state.get("_link_done"):
        return
    st.session_state["_link_done"] = True
    for key, cls in (("arch", Net), ("aug", AugSpec)):
        raw = st.query_params.get(key)
        if not raw:
            continue
        try:
            spec = cls.from_dict(_decode(raw))
        except SpecError as e:
            st.session_state["_link_error"] = f"The share link's {key} spec is invalid: {'; '.join(e.problems)}"
        except Exception:  # noqa: BLE001 - any decoding failure means a damaged link
            st.session_state["_link_error"] = f"The share link's {key} part is damaged and was ignored."
        else:
            set_net(spec) if key == "arch" else set_aug(spec)


def link_error() -> None:
    if msg := st.session_state.pop("_link_error", None):
        st.warning(msg)


def share_query(net: Net, aug: AugSpec) -> dict:
    return {"arch": _encode(net.to_dict()), "aug": _encode(aug.to_dict())}


def get_net() -> Net:
    if "net" not in st.session_state:
        st.session_state["net"] = preset_net(DEFAULT_PRESET).to_dict()
    return Net.from_dict(st.session_state["net"])


def set_net(net: Net) -> None:
    st.session_state["net"] = net.to_dict()
    for key in [k for k in st.session_state if str(k).startswith("w_")]:
        del st.session_state[key]  # widgets re-initialise from the new spec


def get_aug() -> AugSpec:
    if "aug" not in st.session_state:
        st.session_state["aug"] = default_aug().to_dict()
    return AugSpec.from_dict(st.session_state["aug"])


def set_aug(aug: AugSpec) -> None:
    st.session_state["aug"] = aug.to_dict()
    for key in [k for k in st.session_state if str(k).startswith("a_")]:
        del st.session_state[key]


def badges(a: Analysis) -> None:
    cols = st.columns(len(a.rules))
    for col, rule in zip(cols, a.rules):
        col.markdown(f"{':green-badge[✓' if rule.passed else ':red-badge[✗'} {rule.name}]")
        col.caption(rule.reason)
