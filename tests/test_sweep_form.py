"""The Sweep page's form (issue 32 F): a small sweep started from the page without hand-edited JSON."""
from tests.test_app import app_env, shown  # noqa: F401 - the AppTest fixture


def test_the_sweep_form_sets_each_trials_train_subset_and_epochs(app_env, monkeypatch):
    """A small sweep from the page, without hand-edited JSON (issue 32 F): the form's subset and epochs go
    into the space's base training spec, through the space's validator."""
    from playground.runs.space import base_run, with_train
    from tests.test_app import open_page

    started = []
    monkeypatch.setattr("playground.runs.sweep.start_sweep", lambda space, *args: started.append(space))
    at = open_page("sweep")
    at.number_input(key="sw_subset").set_value(500)
    at.number_input(key="sw_epochs").set_value(2)
    at.button(key="sw_start").click().run()
    assert not at.exception and not at.error and len(started) == 1
    train = base_run(started[0])["train"]
    assert (train["train_subset"], train["epochs"]) == (500, 2)
    at.number_input(key="sw_subset").set_value(1)  # one image cannot train: the validator says so, nothing starts
    at.button(key="sw_start").click().run()
    assert len(started) == 1 and any("train subset" in shown(e.value) for e in at.error), [e.value for e in at.error]
    assert with_train([1, 2], epochs=3) == [1, 2] and with_train({"base": {"preset": "fast"}}) == {
        "base": {"preset": "fast"}}
