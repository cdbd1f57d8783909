"""What the Streamlit pages share: cached data and analysis, the launcher of training
workers, the visitor's identity, the working specs in session state, and the share link.
The only module of the package, besides app.py, that imports streamlit."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from . import drafts, form, settings
from .escape import plain
from .runs.store import RunStore
from .specs import links
from .specs.arch import Net
from .settings import hosted
from .specs.config import TrainSpec
from .specs.presets import preset_net
from .specs.recipes import RECIPES
from .specs.serde import SpecError, from_json
from .training.data import Dataset
from .training.decoding import load_in_subprocess
from .training.sources import (NAMED, UPLOAD_PREFIX, DataError, SourceRefused, allowed_sources, check_source,
                               discard_upload, keep_upload, resolve_source, store_upload, upload_kept, upload_name,
                               upload_path, visitor_uploads)

if TYPE_CHECKING:
    from .runs.jobs import Launcher
    from .training.analysis import Analysis
    from .specs.augment import AugSpec

# torch and albumentations (through analysis, augment, config and jobs) take seconds to import: this module
# imports them where they are first used, so a fresh server paints the Home page before it has loaded them.

DEFAULT_PRESET = "fast"


def __getattr__(name: str):
    """``ui.AugSpec`` and ``ui.default_aug``, imported when first asked for."""
    if name in ("AugSpec", "default_aug"):
        from .specs import augment
        return getattr(augment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@st.cache_resource(max_entries=2,
                   show_spinner="Loading the dataset (decoding it the first time takes about half a minute)…")
def cached_dataset(source: str) -> Dataset:
    """One copy per data source for the whole server (all sessions share it), at most two sources,
    the least recently used dropped first. The training images stay on disk, memory-mapped: the
    server shows a few, the workers train on them. So an entry costs its test images in memory
    (3 KiB each: 29 MiB for CIFAR-10's 10,000, at most 10,000 for an upload) plus 8 bytes a label,
    and whichever training pages it touched (file-backed: the kernel can drop them).
    Hosted mode: a source outside the allow-list is refused before anything is read."""
    return load_in_subprocess(check_source(source))


def data_source() -> str:
    return st.session_state.setdefault("data_source", resolve_source(None))


def uploads() -> dict[str, str]:
    """This visitor's uploads still on the server, {source: file name}: this session's, and in hosted
    mode those their cookie made before (a reload starts a new session)."""
    mine = {s: n for s, n in st.session_state.get("uploads", {}).items() if upload_kept(s)}  # dropped ones are gone
    return {**visitor_uploads(owner()), **mine} if hosted() else mine


def data_choices() -> list[str]:
    """Hosted mode: what a visitor may pick: the configured dataset, cifar10 and this visitor's uploads."""
    return allowed_sources() + [s for s in uploads() if s not in allowed_sources()]


def source_label(source: str) -> str:
    """A data source as the page shows it (an upload by its file name)."""
    name = uploads().get(source) if source.startswith(UPLOAD_PREFIX) else None
    return f"uploaded: {name} ({source[7:19]}…)" if name else source


def use_source(source: str) -> str | None:
    """Make ``source`` this session's data; the refusal (one line) in hosted mode, where only the
    choices above are taken."""
    try:
        st.session_state["data_source"] = check_source(source)
    except SourceRefused as e:
        return str(e)
    return None


def choose_data(source: str, upload=None) -> str | None:
    """The Home page's choice: a new upload (``st.file_uploader``'s file) if there is one, else
    ``source``. Returns the problem in one line, or None."""
    if upload is not None and getattr(upload, "file_id", None) != st.session_state.get("_data_upload_id"):
        try:
            visitor = owner() if hosted() else ""
            name = upload_name(upload.name)
            stored = store_upload(upload.getvalue(), owner=visitor, name=name)
        except DataError as e:
            return str(e)
        try:
            cached_dataset(stored)  # unpacked and decoded now (in a child process), so a bad archive is refused here
        except DataError as e:
            discard_upload(stored, owner=visitor)
            return str(e)
        try:
            keep_upload(stored, owner=visitor)  # room is made only for an archive that loads
        except DataError as e:
            return str(e)
        st.session_state["_data_upload_id"] = getattr(upload, "file_id", None)
        st.session_state.setdefault("uploads", {})[stored] = name
        source = stored
    return use_source(source)


def max_upload_mb() -> int:
    """The upload cap for ``st.file_uploader`` (app.py has checked the setting)."""
    return settings.whole("PLAYGROUND_MAX_UPLOAD_MB")


def restore_widget_values() -> None:
    """Before the Train form is drawn: the kept copy (form.KEPT) of each value Streamlit has dropped, so a
    visitor who looks at another page and comes back finds the form as they left it."""
    for key, value in st.session_state.get("_kept_widgets", {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def remember_widget_values() -> None:
    """After the widgets are drawn: their values, kept under a key that Streamlit never drops."""
    st.session_state["_kept_widgets"] = {k: st.session_state[k] for k in form.KEPT if k in st.session_state}


def fit_kept_values(t_subset: int, t_teachers: list[str]) -> None:
    """A kept value that no longer fits its widget (another dataset has fewer images, a teacher run was
    deleted) is brought within it, so the widget does not fail on it."""
    if st.session_state.get("t_subset", 0) > t_subset:
        st.session_state["t_subset"] = t_subset
    if "t_teachers" in st.session_state:
        st.session_state["t_teachers"] = [i for i in st.session_state["t_teachers"] if i in t_teachers]


def store_error(e: Exception) -> None:
    """A run store that cannot be used (damaged, full, read-only): one line wherever it is met."""
    st.error(f"**The run store cannot be used.** {plain(e)}")


def dataset(show_error: bool = True) -> Dataset | None:
    """The dataset, or None with a clear message on the page (never a traceback); the message is
    also kept as ``st.session_state["data_error"]``. A source that hosted mode refuses is always
    reported, as one ``st.error`` line, and nothing is read."""
    source = data_source()
    st.session_state["data_error"] = None
    try:
        check_source(source)
    except SourceRefused as e:
        st.session_state["data_error"] = str(e)
        st.error(plain(e))
        return None
    lean_memory()
    try:
        if source.startswith(UPLOAD_PREFIX):
            upload_path(source)  # still there, and marked in use, so that other visitors' uploads make room first
        return cached_dataset(source)
    except DataError as e:
        st.session_state["data_error"] = str(e)
        if show_error:
            st.error(f"**No dataset available.** {plain(e)}")
        return None


def source_refused() -> bool:
    """Whether hosted mode refuses this session's source (``dataset()`` has said so)."""
    try:
        check_source(data_source())
    except SourceRefused:
        return True
    return False


_lean_done = False


def lean_memory() -> None:
    """Hosted mode: have this server process give freed memory back at once (device.return_memory_eagerly),
    before it loads its first dataset; once per process."""
    global _lean_done
    if not _lean_done:
        _lean_done = True
        if hosted():
            from .training.device import return_memory_eagerly
            return_memory_eagerly()


@st.cache_resource
def launcher() -> Launcher:
    """One per server: it starts the workers and keeps their handles; the store holds the rest."""
    from .runs.jobs import Launcher
    return Launcher()


def store() -> RunStore:
    return launcher().store


@st.cache_data(max_entries=256, show_spinner=False)
def _analysis(spec_json: str) -> Analysis:
    from .training.analysis import analyze
    return analyze(from_json(Net, spec_json))  # types only: an invalid working copy is analysed to show why


def analysis(net: Net) -> Analysis:
    return _analysis(net.to_json(None))


OWNER_COOKIE = "playground_owner"


def owner() -> str:
    """Who this visitor is, for run ownership in hosted mode and their drafts: a random token kept in a
    cookie, so a reload of the tab (a new Streamlit session) is still the same visitor. The store
    keeps only its hash. Draws nothing: the pages ask for it inside their columns."""
    if "owner" not in st.session_state:
        token = st.context.cookies.get(OWNER_COOKIE)  # sent by the browser: anything at all
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
            token = secrets.token_hex(16)
            st.session_state["_new_owner_token"] = token
        st.session_state["owner"] = hashlib.sha256(token.encode()).hexdigest()[:32]
    return st.session_state["owner"]


def remember_owner() -> None:
    """app.py, once per run, before any page: a new visitor's token written to their cookie, on every
    run of the session that made it (a run can be cut short before the browser sees it). Each call used to
    draw the script where owner() was called, so a new visitor's first run had one in every column
    that asked, and a second one at the top broke the Architect's sticky metrics."""
    owner()
    if token := st.session_state.get("_new_owner_token"):
        st.html(f"<script>document.cookie = '{OWNER_COOKIE}={token}; path=/; max-age=31536000; SameSite=Strict';"
                f"</script>", unsafe_allow_javascript=True)


GUIDE_COOKIE = "playground_guide"


def guide_hidden() -> bool:
    """Whether this visitor dismissed the Home page's "Start here" guide. Kept in a cookie, not in the
    link: a reload, a new tab or a bookmark of any page still knows it (query parameters are dropped when
    the visitor moves to another page, and a shared link would hide the guide for its receiver too)."""
    if "guide_hidden" not in st.session_state:
        st.session_state["guide_hidden"] = st.context.cookies.get(GUIDE_COOKIE) == "hidden"
    if (cookie := st.session_state.get("_guide_cookie")) is not None:  # written on every run after a change:
        age = 31536000 if cookie else 0                                 # a run may end before the browser sees it
        st.html(f"<script>document.cookie = '{GUIDE_COOKIE}=hidden; path=/; max-age={age}; SameSite=Strict';"
                f"</script>", unsafe_allow_javascript=True)
    return st.session_state["guide_hidden"]


def hide_guide(hidden: bool = True) -> None:
    """on_click for the guide's buttons: hide it (or show it again) now and in later visits."""
    st.session_state["guide_hidden"] = st.session_state["_guide_cookie"] = hidden


def restore_from_link() -> None:
    """Apply ?arch=…&aug=… once per session, through the validator; a bad link is reported, not fatal."""
    if st.session_state.get("_link_done"):
        return
    st.session_state["_link_done"] = True
    errors = []
    for key in ("arch", "aug"):
        raw = st.query_params.get(key)
        if not raw:
            continue
        cls = Net if key == "arch" else __getattr__("AugSpec")
        try:
            spec = links.decode(cls, raw)  # bounded and validated; any failure is one SpecError
        except SpecError as e:
            errors.append(f"The share link's {key} part was ignored: {plain('; '.join(e.problems))}")
        else:
            set_net(spec) if key == "arch" else set_aug(spec)
    if errors:  # each part's own line (the aug part's error had replaced the arch part's)
        st.session_state["_link_error"] = errors


def restore_draft() -> None:
    """Once per session, after restore_from_link: the architecture, pipeline, data choice and Train form this
    visitor had when their last session ended (a reload, a new tab: drafts.py), each part the link did not set
    and only through its validator (the form: its types, then its widgets' bounds); a data source only while
    this visitor may still pick it."""
    if st.session_state.get("_draft_done"):
        return
    st.session_state["_draft_done"] = True
    draft = drafts.load(owner())
    for key, cls in (("net", Net), ("aug", __getattr__("AugSpec"))):
        if key in draft and key not in st.session_state:
            with suppress(SpecError):
                st.session_state[key] = cls.from_dict(draft[key]).to_dict()
    source = draft.get("data")
    if isinstance(source, str) and "data_source" not in st.session_state and _still_there(source):
        st.session_state["data_source"] = source
    # what the session starts with: the restored draft, else the defaults (worked out once, not on every rerun)
    st.session_state["_draft_saved"] = {**{k: _default(k) for k in ("net", "aug", "data")}, **copy.deepcopy(draft)}
    st.session_state["_draft_saved"].pop("train", None)  # save_draft takes the Train form as first drawn
    if isinstance(train := draft.get("train"), dict) and "_kept_widgets" not in st.session_state:
        with suppress(SpecError):
            _restore_train_form(train)


def _restore_train_form(train: dict) -> None:
    """The Train form's values from a draft's TrainSpec (the page fits the subset and teachers to its data),
    its recipe choice, and the recipe it was loaded from, whose settings without a widget (seed-001's
    warm-up) apply at Start while the session's net is the one it was loaded for (not a share link's, nor
    one another tab saved since)."""
    kept = form.values(TrainSpec.parse(train.get("spec")))  # types: the form as left, even if Start refuses it
    if isinstance(recipe := train.get("recipe"), str) and recipe in RECIPES:
        kept["t_recipe"] = recipe
    st.session_state["_kept_widgets"] = kept
    loaded = train.get("loaded")
    if isinstance(loaded, str) and loaded in RECIPES and train.get("for_net") == _digest(st.session_state.get("net")):
        st.session_state["t_loaded"] = loaded


def _digest(net: dict | None) -> str:
    return hashlib.sha256(json.dumps(net, sort_keys=True).encode()).hexdigest()[:32]


def _still_there(source: str) -> bool:
    if hosted():
        return source in data_choices()
    try:
        check_source(source)
        return source in NAMED or upload_kept(source) or Path(source).exists()
    except (DataError, OSError, ValueError):  # a name the file system refuses
        return False


def save_draft() -> None:
    """After each run of a page: the parts of this session's working specs and data choice that changed,
    merged into the visitor's draft. A part is changed when it differs from what the session started with
    (the restored draft, else the default): another tab's changes to the other parts stay, and a session
    that only saw the defaults saves nothing (a visitor without cookies, a monitor or a bot, wrote a draft
    on each visit and pushed real visitors' drafts out)."""
    draft = {k: st.session_state[k] for k in ("net", "aug") if k in st.session_state}
    if "data_source" in st.session_state:
        draft["data"] = st.session_state["data_source"]
    saved = st.session_state.get("_draft_saved", {})
    if kept := st.session_state.get("_kept_widgets"):  # the Train form's values as of its last Start or recipe
        loaded = st.session_state.get("t_loaded")
        draft["train"] = {"spec": form.spec(kept).to_dict(), "recipe": kept.get("t_recipe"), "loaded": loaded,
                          "for_net": _digest(st.session_state.get("net")) if loaded else None}
        saved.setdefault("train", draft["train"])  # the form as first drawn (the defaults or the restored draft)
    changed = {k: v for k, v in draft.items() if v != saved.get(k)}
    if not changed:
        return
    st.session_state["_draft_saved"] = {**saved, **copy.deepcopy(changed)}  # not kept (a full disk): not retried
    drafts.update(owner(), changed)


def _default(part: str):
    """What a new session starts with where no draft is restored."""
    if part == "net":
        return preset_net(DEFAULT_PRESET).to_dict()
    if part == "aug":
        return __getattr__("default_aug")().to_dict()
    return resolve_source(None)


def link_error() -> None:
    for msg in st.session_state.pop("_link_error", []):
        st.error(msg)


def share_query(net: Net, aug: AugSpec) -> dict:
    return {"arch": links.encode(net), "aug": links.encode(aug)}


def get_net() -> Net:
    if "net" not in st.session_state:
        st.session_state["net"] = preset_net(DEFAULT_PRESET).to_dict()
    return Net.parse(st.session_state["net"])  # the page's own working copy: may be invalid while edited


def set_net(net: Net) -> None:
    spec = net.to_dict()
    if spec != st.session_state.get("net"):  # a recipe loaded on the Train page no longer describes the run
        st.session_state.pop("t_loaded", None)  # (the Architect page sets the same net again on each visit)
    st.session_state["net"] = spec
    for key in [k for k in st.session_state if str(k).startswith("w_")]:
        del st.session_state[key]  # widgets re-initialise from the new spec


def get_aug() -> AugSpec:
    from .specs.augment import AugSpec, default_aug
    if "aug" not in st.session_state:
        st.session_state["aug"] = default_aug().to_dict()
    return AugSpec.parse(st.session_state["aug"])


def set_aug(aug: AugSpec) -> None:
    st.session_state["aug"] = aug.to_dict()
    for key in [k for k in st.session_state if str(k).startswith("a_")]:
        del st.session_state[key]


def sticky_column(key: str) -> None:
    """Keep the column that holds the container ``key`` in view while the page scrolls (a preview or the
    metrics beside their controls); a narrow window, where Streamlit stacks the columns, leaves it in place."""
    st.html(f"<style>@media (min-width: 640px) {{ [data-testid=stColumn]:has(.st-key-{key}) "
            f"{{ position: sticky; top: 3.75rem; align-self: flex-start; z-index: 2; }} }}</style>")


def badges(a: Analysis, compact: bool = False) -> None:
    """The rule checks: side by side, each with its reason; or, compact (a narrow column), the badges in one
    paragraph and only the failed rules' reasons."""
    def badge(rule) -> str:
        return f"{':green-badge[✓' if rule.passed else ':red-badge[✗'} {rule.name}]"

    if compact:
        st.markdown(" ".join(badge(rule) for rule in a.rules))
        for rule in a.rules:
            if not rule.passed:
                st.caption(f"✗ {rule.name}: {plain(rule.reason)}")
        return
    cols = st.columns(len(a.rules))
    for col, rule in zip(cols, a.rules):
        col.markdown(badge(rule))
        col.caption(rule.reason)
