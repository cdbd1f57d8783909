import pandas as pd
import streamlit as st

from playground.ui import server, share_links, style, working_specs
from playground.escape import bullets
from playground.results.plots import rf_figure
from playground.specs import limits
from playground.specs.arch import Block, Layer, Net
from playground.specs.edits import edited_layer
from playground.specs.kinds import KIND_LABELS
from playground.specs.presets import PRESETS, preset_net
from playground.specs.recipes import measured_for
from playground.specs.serde import SpecError

KINDS = list(KIND_LABELS)
KERNELS, STRIDES, DILATIONS, SPANS = (1, 2, 3, 5, 7), (1, 2), (1, 2, 3, 4), (0, 1, 2, 3)
NEW_BLOCK = Block([Layer(out=64)])
BLANK = Net(name="blank", blocks=[Block([Layer(out=16)])])  # the smallest net that builds: one 3x3 conv, GAP, 1x1 head
ORIGINS = {*PRESETS, BLANK.name}  # a net that still carries one of these names is renamed at its first edit


# The spec in st.session_state["net"] is the only truth; the widgets show it. A browser keeps each widget's value
# by key and sends it back with the next edit, so every change goes through a callback (which runs before the
# widgets are drawn) that stores the new spec and writes every widget key from it.

def widget_state(net: Net) -> dict:
    """The value of every spec widget for this spec, whatever it holds (the ranges widen to show it)."""
    state = {"w_name": net.name, "w_blocks": len(net.blocks)}
    for b, block in enumerate(net.blocks):
        state |= {f"w_{b}_n": len(block.layers), f"w_{b}_skip": block.skip, f"w_{b}_every": block.skip_every}
        for i, layer in enumerate(block.layers):
            state |= {f"w_{b}_{i}_kind": layer.kind, f"w_{b}_{i}_out": layer.out, f"w_{b}_{i}_k": layer.kernel,
                      f"w_{b}_{i}_s": layer.stride, f"w_{b}_{i}_d": layer.dilation, f"w_{b}_{i}_pool": layer.pools}
    return state


def show(net: Net) -> None:
    """Make ``net`` the working spec, and the widgets and the JSON editor show it."""
    working_specs.set_net(net)
    st.session_state.update(widget_state(net), json_text=net.to_json())


def layer_from_widgets(src: Layer, b: int, i: int) -> Layer:
    """``src`` with this row's widget values."""
    s = st.session_state
    kind, out, kernel, stride, dilation, pools = (s.get(f"w_{b}_{i}_{name}", value) for name, value in (
        ("kind", src.kind), ("out", src.out), ("k", src.kernel), ("s", src.stride), ("d", src.dilation),
        ("pool", src.pools)))
    return edited_layer(src, kind, out, kernel, stride, dilation, pools)


def on_edit() -> None:
    """A spec widget changed: rebuild the spec from the old one and the widget values, then show it."""
    base, s = working_specs.get_net(), st.session_state
    blocks = []
    for b in range(s["w_blocks"]):
        old = base.blocks[b] if b < len(base.blocks) else NEW_BLOCK
        n = s.get(f"w_{b}_n", len(old.layers))
        layers = [layer_from_widgets(old.layers[min(i, len(old.layers) - 1)], b, i) for i in range(n)]
        blocks.append(Block(layers, s.get(f"w_{b}_skip", old.skip), old.skip_from if old.skip_from < n else 0,
                            s.get(f"w_{b}_every", old.skip_every)))
    name = f"{base.name} (edited)"[:limits.current().name_chars] if base.name in ORIGINS else base.name
    show(Net(**{**base.__dict__, "name": name, "blocks": blocks}))


def on_name() -> None:
    """The name widget changed: one line of printable text within the limit; an empty name keeps the old one."""
    base = working_specs.get_net()
    name = " ".join("".join(c if c.isprintable() else " " for c in str(st.session_state["w_name"])).split())
    show(Net(**{**base.__dict__, "name": name[:limits.current().name_chars] or base.name}))


def on_load_preset() -> None:
    show(preset_net(st.session_state["preset_pick"]))


def on_blank() -> None:
    show(Net.from_dict(BLANK.to_dict()))


def on_apply_json() -> None:
    try:
        candidate = Net.from_json(st.session_state["json_text"])  # parsed and validated, limits included
    except SpecError as e:
        st.session_state["json_problems"] = e.problems
    else:
        show(candidate)


def label(name: str) -> str:
    m = measured_for(name)
    return f"{name} — measured {m.test_acc:.1f}% in {m.wall_s / 60:.0f} min on {m.where}" if m else name


def options(usual: tuple[int, ...], value: int) -> list[int]:
    return sorted({*usual, value})


st.title("Architect")
net = working_specs.get_net()
if any(st.session_state.get(k) != v for k, v in widget_state(net).items()):
    show(net)  # first visit, or the spec was set elsewhere (a recipe, a share link)

style.sticky_column("arch_board")
controls, board = st.columns([3, 2], gap="medium")
with controls:
    c1, c2, c3 = st.columns([4, 2, 2], vertical_alignment="bottom")
    preset = c1.selectbox("Start from a preset", list(PRESETS), index=None, placeholder="choose a preset…",
                          format_func=label, key="preset_pick")
    c2.button("Load preset", key="load_preset", disabled=preset is None, on_click=on_load_preset, width="stretch")
    c3.button("Blank net", key="blank_net", on_click=on_blank, width="stretch", icon=":material/add:",
              help="Start from the smallest net that builds: one 3×3 conv, then the GAP head")
    st.text_input("Name", key="w_name", max_chars=limits.current().name_chars, on_change=on_name,
                  help="Shown on the Train page and in the run list; an edited preset is named after it")
    st.slider("Blocks", 1, max(6, len(net.blocks)), key="w_blocks", on_change=on_edit)
    for b, block in enumerate(net.blocks):
        with st.expander(f"C{b + 1}", expanded=b == 0, key=f"arch_c{b}"):
            st.slider("Layers", 1, max(6, len(block.layers)), key=f"w_{b}_n", on_change=on_edit)
            s1, s2 = st.columns(2)
            s1.toggle("Residual skip", key=f"w_{b}_skip", on_change=on_edit)
            s2.selectbox("Residual around", options(SPANS, block.skip_every),
                         format_func=lambda k: "the whole block" if k <= 0 else f"every {k} layer(s)",
                         key=f"w_{b}_every", disabled=not block.skip, on_change=on_edit,
                         help="One residual around the block, or ResNet-style units of k layers each")
            for i, layer in enumerate(block.layers):
                with st.container(border=True, key=f"arch_row_{b}_{i}"):  # two lines: the width slider gets room
                    r1, r2 = st.columns([2, 3])
                    r1.selectbox(f"type {i + 1}", KINDS, format_func=KIND_LABELS.get, key=f"w_{b}_{i}_kind",
                                 on_change=on_edit)
                    r2.slider("width", min(4, layer.out), max(256, layer.out),
                              step=4 if layer.out % 4 == 0 else 1, key=f"w_{b}_{i}_out", disabled=layer.is_pool,
                              on_change=on_edit)
                    k1, k2, k3, k4 = st.columns([3, 3, 3, 3], vertical_alignment="bottom")
                    k1.selectbox("kernel", options(KERNELS, layer.kernel), key=f"w_{b}_{i}_k", on_change=on_edit)
                    k2.selectbox("stride", options(STRIDES, layer.stride), key=f"w_{b}_{i}_s", on_change=on_edit)
                    k3.selectbox("dilation", options(DILATIONS, layer.dilation), key=f"w_{b}_{i}_d",
                                 disabled=layer.is_pool or layer.kernel == 1, on_change=on_edit,
                                 help="Spreads the kernel's taps d pixels apart: a k×k kernel reaches d·(k−1)+1 "
                                 "pixels. A 1×1 kernel is one tap, so it has no dilation.")
                    k4.toggle("pool", key=f"w_{b}_{i}_pool", disabled=layer.is_pool or layer.norm_order != "bn-relu",
                              on_change=on_edit, help="A 2×2 max-pool right after the conv, before its BN and ReLU "
                              "(airbench's order): halves the map like a max-pool layer after it, and BN and ReLU "
                              "run on a quarter of the pixels")
    st.space(240)  # room to scroll the last editors up beside the metrics (a sticky column stays within its row)
a = server.analysis(net)

with board, st.container(key="arch_board"):  # beside the editors, and it stays in view while they scroll
    if not a.ok:
        st.error("**This architecture cannot be built:**\n\n" + bullets(a.problems))
    else:
        m1, m2 = st.columns(2)
        m1.metric("Parameters", f"{a.params:,}", f"{a.params - 200_000:+,} vs 200k", delta_color="inverse")
        m2.metric("MACs", f"{a.macs / 1e6:.1f} M")
        m3, m4 = st.columns(2)
        m3.metric("Receptive field", f"{a.trace.rf:g} px", f"{a.coverage:.0%} image area",
                  delta_color="off", delta_arrow="off",
                  help="How wide a square of the input one unit before GAP sees (the rule asks for more than 44 "
                       "px), and the share of the 32×32 image's area that the centre unit's square covers")
        m4.metric("Output", f"{a.trace.out_channels}×{a.trace.out_size}×{a.trace.out_size}")
        st.progress(min(1.0, a.params / 200_000), text=f"{a.params / 200_000:.0%} of the parameter budget")
        style.badges(a, compact=True)

if a.ok:
    table = pd.DataFrame(a.table())
    st.dataframe(table, hide_index=True, width="stretch", key="rf_table")
    st.plotly_chart(rf_figure(a.table()), key="rf_chart")
    with st.expander("torchinfo summary", key="arch_summary"):
        st.code(a.summary, language="text")
    st.caption("RF is measured before global average pooling; the seeds also count GAP as one more layer "
               f"(that gives {a.trace.rf_with_gap:g} px here).")

st.subheader("Share and edit")
if st.button("Put this architecture and augmentation in the link", icon=":material/link:", key="share"):
    st.query_params.update(share_links.share_query(net, working_specs.get_aug()))
    st.success("The address bar now holds the spec; copy it to share.")
with st.expander("Advanced: edit the JSON spec", key="arch_json"):
    st.text_area("Architecture JSON", height=300, key="json_text")
    st.button("Apply JSON", key="apply_json", on_click=on_apply_json)
    if problems := st.session_state.pop("json_problems", None):
        st.error("**Not applied:**\n\n" + bullets(problems))
    st.download_button("architecture.json", net.to_json(), "architecture.json", icon=":material/download:",
                       key="dl_arch")
