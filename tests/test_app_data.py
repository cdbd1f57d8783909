"""AppTest for the Home page's data: hosted mode's allow-list and uploads, skipped files, and the
server's least-recently-used dataset cache (moved from test_app.py)."""
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from playground.ui import data_choice
from playground.training.data import load_dataset

from .test_app import app_env, open_page, shown  # noqa: F401  (app_env is a fixture)


def _upload_bytes(folder, arcname: str, extra: tuple[str, bytes] | None = None) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=arcname)
        if extra:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            tar.addfile(info, io.BytesIO(extra[1]))
    return buf.getvalue()


def _in_process(source: str):
    """load_in_subprocess without the child process (test_data covers it), for fast AppTests."""
    return load_dataset(source, mmap_train=True)


def _use_this_data(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Use this data").click().run()
    assert not at.exception, at.exception
    return at


def test_home_hosted_refuses_a_server_path_in_one_line_and_loads_nothing(app_env, monkeypatch, tmp_path):
    """Hosted mode: a source outside the allow-list gets one st.error line, the same whether the
    path exists or not, and nothing is read; the form offers only the allowed sources."""
    import re

    from tests.conftest import make_image_folder

    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    loaded, real = [], data_choice.load_in_subprocess
    monkeypatch.setattr(data_choice, "load_in_subprocess", lambda source: loaded.append(source) or real(source))
    server_files = make_image_folder(tmp_path / "server-files", n_train=1, n_test=1)  # local mode would load it
    answers = []
    for path in (str(server_files), str(tmp_path / "nothing-here")):
        at = open_page("home", data_source=path)
        assert len(at.error) == 1 and "This demo loads only" in shown(at.error[0].value)
        assert not at.success and not any("No dataset is available" in shown(w.value) for w in at.warning)
        answers.append(re.sub(r"'.*'", "<source>", shown(at.error[0].value)))
    assert answers[0] == answers[1] and loaded == []
    assert not at.text_input and at.selectbox[0].options == [str(app_env), "cifar10"]


def test_home_hosted_upload_hostile_then_good(app_env, monkeypatch, tmp_path):
    """A hostile upload is one error line, discarded, and the session keeps its data; a good one
    becomes the session's data and is offered by its file name."""
    from playground.training.sources import cache_dir
    from tests.conftest import make_image_folder

    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    monkeypatch.setattr(data_choice, "load_in_subprocess", _in_process)
    mine = make_image_folder(tmp_path / "mine", n_train=2, n_test=1)
    at = open_page("home")
    at.file_uploader[0].set_value(("evil.tar.gz", _upload_bytes(mine, "mine", ("mine/../../../escaped.txt", b"x")),
                                   "application/gzip"))
    _use_this_data(at)
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1 and "points outside the archive" in errors[0] and "\n" not in errors[0]
    assert at.session_state["data_source"] == str(app_env)
    assert at.selectbox[0].options == [str(app_env), "cifar10"] and not list(cache_dir().glob("uploads/*"))
    at.file_uploader[0].set_value(("mine.tar.gz", _upload_bytes(mine, "mine"), "application/gzip"))
    _use_this_data(at)
    assert at.session_state["data_source"].startswith("upload:") and not at.error
    assert any(shown(s.value).startswith("Using **mine.tar.gz**: 20 training and 10 test images") for s in at.success), [
        shown(s.value) for s in at.success]
    assert any(o.startswith("uploaded: mine.tar.gz") for o in at.selectbox[0].options)


def test_the_server_keeps_at_most_two_datasets_least_recently_used_first(monkeypatch):
    st.cache_resource.clear()
    loaded = []
    monkeypatch.setattr(data_choice, "load_in_subprocess", lambda source: loaded.append(source) or object())
    for source in ("a", "b", "a", "c", "a", "b"):
        data_choice.cached_dataset(source)
    assert loaded == ["a", "b", "c", "b"]  # c pushed out b, the least recently used
    st.cache_resource.clear()


def test_home_counts_skipped_files_in_a_warning_and_takes_a_path_locally(app_env, monkeypatch, tmp_path):
    from tests.conftest import make_image_folder

    monkeypatch.setattr(data_choice, "load_in_subprocess", _in_process)
    damaged = make_image_folder(tmp_path / "damaged", n_train=1, n_test=1)
    (damaged / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    at = open_page("home")
    at.text_input[0].set_value(str(damaged))
    _use_this_data(at)
    assert any("10 training and 10 test images" in shown(s.value) for s in at.success)
    assert any("1 file skipped (train/cat/broken.png: not an image" in shown(w.value) for w in at.warning), \
        [shown(w.value) for w in at.warning]


def test_home_hosted_lists_the_visitors_uploads_after_a_reload(app_env, monkeypatch, tmp_path):
    """A reload is a new session: the visitor's uploads, still on the server, are offered by the
    name they uploaded; another visitor's are not."""
    from playground.training.sources import keep_upload, store_upload

    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    mine = store_upload(_upload_bytes(app_env, "mine"), owner="a" * 32, name="holiday.tar.gz")
    keep_upload(mine, owner="a" * 32)
    theirs = store_upload(_upload_bytes(app_env, "theirs"), owner="b" * 32, name="secret.tar.gz")
    at = AppTest.from_file(str(Path(data_choice.__file__).parents[1] / "app.py"), default_timeout=60)
    at.session_state["owner"] = "a" * 32  # the hash of this visitor's cookie, as visitor.owner() keeps it
    at.run()
    box = next(b for b in at.selectbox if b.label == "Data source")
    assert any("holiday.tar.gz" in o and mine[7:19] in o for o in box.options), box.options
    assert not any("secret" in o or theirs[7:19] in o for o in box.options), box.options
