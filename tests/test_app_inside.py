"""AppTest of the Inside page: the Architect's net untrained or a run's weights, a test image or a photo, every
layer's maps, and the box of the picked unit where the trace puts it."""
from playground.results import inside
from playground.specs.geometry import trace
from playground.specs.presets import preset_net
from playground.ui import server
from tests.test_app import _stored_run, app_env, open_page, shown  # noqa: F401  (app_env is a fixture)


def rects(at, key: str) -> dict[str, dict]:
    """The named rectangles of the Plotly chart with ``key``, as the browser receives them."""
    import json

    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    spec = json.loads(chart.proto.spec)
    return {s["name"]: s for s in spec["layout"].get("shapes", []) if s.get("name")}


def test_the_architects_net_shows_every_layer_and_the_box_where_the_trace_puts_it(app_env):
    net = preset_net("seed-004")
    at = open_page("inside", net=net.to_dict())
    assert not at.error, [shown(e.value) for e in at.error]
    rows = trace(net).rows
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert captions[1:1 + len(rows)] == [f"top {min(8, r.c_out)} of {r.c_out} channels" for r in rows]
    layer_key = next(s.key for s in at.selectbox if s.key and s.key.startswith("i_layer_"))
    assert at.selectbox(key=layer_key).value == len(rows) - 1  # the RF the rule counts, by default
    at.selectbox(key=layer_key).set_value(1).run()  # C1.2, a 32x32 map: pick a unit at the border
    row = rows[1]
    r_key = next(n.key for n in at.number_input if n.key and n.key.startswith("i_r_"))
    c_key = next(n.key for n in at.number_input if n.key and n.key.startswith("i_c_"))
    at.number_input(key=r_key).set_value(0).run()
    at.number_input(key=c_key).set_value(5).run()
    assert not at.exception and not at.error
    box = inside.theoretical_box(row, 0, 5)
    drawn = rects(at, "i_field")["theoretical RF"]
    assert (drawn["x0"], drawn["x1"], drawn["y0"], drawn["y1"]) == (box.left - 0.5, box.right + 0.5,
                                                                     box.top - 0.5, box.bottom + 0.5)
    on = rects(at, "i_field")["theoretical RF on the image"]
    assert on["y0"] == -0.5 and on["x0"] == max(0, box.left) - 0.5  # clipped at the top border
    assert any(m.label == "Theoretical RF" and m.value == f"{row.r:g} px" for m in at.metric)


def test_a_runs_weights_show_trained_and_initial_effective_fields_and_a_photo_works(app_env):
    run_id = _stored_run(app_env)
    at = open_page("inside")
    at.radio(key="i_which").set_value("A finished run's weights").run()
    assert at.selectbox(key="i_run").value == run_id
    assert not at.exception and not at.error, [shown(e.value) for e in at.error]
    assert any("Trained:" in shown(c.value) and "At initialisation:" in shown(c.value) for c in at.caption)
    record = server.store().get(run_id)
    assert record.checkpoint_sha
    at.radio(key="i_source").set_value("Your photo").run()
    assert any("Upload a photo" in shown(i.value) for i in at.info)


def test_a_separable_and_a_dilated_layer_are_explained(app_env):
    net = preset_net("seed-003")
    rows = trace(net).rows
    sep = next(i for i, r in enumerate(rows) if r.kind == "sep")
    at = open_page("inside", net=net.to_dict())
    layer_key = next(s.key for s in at.selectbox if s.key and s.key.startswith("i_layer_"))
    at.selectbox(key=layer_key).set_value(sep).run()
    assert not at.exception
    assert any("depthwise-separable" in shown(m.value) for m in at.markdown)
    steps = at.dataframe[0].value
    assert list(steps["step"]) == ["depthwise", "pointwise"] and steps["params"].sum() == rows[sep].params
    dilated = next(i for i, r in enumerate(rows) if r.dilation > 1 and r.kernel > 1)
    at.selectbox(key=layer_key).set_value(dilated).run()
    assert any(f"{rows[dilated].k_eff}×{rows[dilated].k_eff}" in shown(m.value) for m in at.markdown)
    assert "kernel reach" in rects(at, "i_taps")

