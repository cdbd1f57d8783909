import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from playground import ui
from playground.arch import KIND_LABELS, Block, Layer, Net
from playground.geometry import validate
from playground.presets import PRESETS, preset_net
from playground.recipes import measured_for
from playground.serde import SpecError

st.title("Architect")
ui.link_error()
base = ui.get_net()

c1, c2 = st.columns([3, 1])
def _label(name: str) -> str:
    m = measured_for(name)
    return f"{name} — measured {m.test_acc:.1f}% in {m.wall_s / 60:.0f} min on {m.where}" if m else name


preset = c1.selectbox("Start from a preset", list(PRESETS), index=None, placeholder="choose a preset…",
                      format_func=_label, key="preset_pick")
if c2.button("Load preset", key="load_preset", disabled=preset is None):
    ui.set_net(preset_net(preset))
    st.rerun()

KINDS = list(KIND_LABELS)
n_blocks = st.slider("Blocks", 1, 6, len(base.blocks), key="w_blocks")
blocks: list[Block] = []
for b in range(n_blocks):
    old = base.blocks[b] if b < len(base.blocks) else Block([Layer(out=64)])
    with st.expander(f"C{b + 1}", expanded=b == 0):
        n_layers = st.slider("Layers", 1, 6, len(old.layers), key=f"w_{b}_n")
        s1, s2 = st.columns(2)
        skip = s1.toggle("Residual skip", old.skip, key=f"w_{b}_skip")
        spans = sorted({0, 1, 2, 3, max(0, old.skip_every)})
        every = s2.selectbox("Residual around", spans, spans.index(max(0, old.skip_every)),
                             format_func=lambda k: "the whole block" if k == 0 else f"every {k} layer(s)",
                             key=f"w_{b}_every", disabled=not skip,
                             help="One residual around the block, or ResNet-style units of k layers each")
        layers = []
        for i in range(n_layers):
            src = old.layers[min(i, len(old.layers) - 1)]
            cols = st.columns(5)
            kind = cols[0].selectbox(f"type {i + 1}", KINDS, KINDS.index(src.kind), format_func=KIND_LABELS.get,
                                     key=f"w_{b}_{i}_kind")
            width = cols[1].slider("width", 4, 256, max(4, min(256, src.out or 32)), 4, key=f"w_{b}_{i}_out",
                                   disabled=kind.endswith("pool"))
            kernel = cols[2].selectbox("kernel", [1, 2, 3, 5, 7], [1, 2, 3, 5, 7].index(src.kernel)
                                       if src.kernel in (1, 2, 3, 5, 7) else 2, key=f"w_{b}_{i}_k")
            stride = cols[3].selectbox("stride", [1, 2], src.stride - 1 if src.stride in (1, 2) else 0,
                                       key=f"w_{b}_{i}_s")
            dilation = cols[4].selectbox("dilation", [1, 2, 3, 4], src.dilation - 1 if src.dilation <= 4 else 0,
                                         key=f"w_{b}_{i}_d", disabled=kind.endswith("pool"))
            layer = Layer(**{**src.__dict__, "kind": kind, "out": width, "kernel": kernel, "stride": stride,
                             "dilation": 1 if kind.endswith("pool") else dilation})
            if (kernel, layer.dilation, kind) != (src.kernel, src.dilation, src.kind):
                layer.padding = 0 if kind.endswith("pool") else layer.dilation * (kernel - 1) // 2
                layer.order = "none" if kind.endswith("pool") else ("bn-relu" if src.is_pool else src.order)
            if kind == "grouped" and layer.groups == 1:
                layer.groups = 4
            layers.append(layer)
        blocks.append(Block(layers, skip, old.skip_from if old.skip_from < n_layers else 0, every))
net = Net(**{**base.__dict__, "blocks": blocks})
st.session_state["net"] = net.to_dict()
a = ui.analysis(net)

if not a.ok:
    st.error("**This architecture cannot be built:**\n\n" + "\n".join(f"- {p}" for p in a.problems))
else:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Parameters", f"{a.params:,}", f"{a.params - 200_000:+,} vs 200k budget", delta_color="inverse")
    m2.metric("MACs", f"{a.macs / 1e6:.1f} M")
    m3.metric("Receptive field", f"{a.trace.rf:g} px", f"covers {a.coverage:.0%} of the image", delta_color="off")
    m4.metric("Output", f"{a.trace.out_channels}×{a.trace.out_size}×{a.trace.out_size}")
    st.progress(min(1.0, a.params / 200_000), text=f"{a.params / 200_000:.0%} of the parameter budget")
    ui.badges(a)
    table = pd.DataFrame(a.table())
    st.dataframe(table, hide_index=True, width="stretch", key="rf_table")
    fig = go.Figure()
    fig.add_scatter(x=table["layer"], y=table["r"], name="receptive field (px)", mode="lines+markers")
    fig.add_bar(x=table["layer"], y=table["n"], name="feature map size n", yaxis="y2", opacity=0.4)
    fig.add_hline(y=44, line_dash="dot", annotation_text="RF 44")
    fig.update_layout(height=320, margin=dict(t=20, b=20), yaxis=dict(title="RF"),
                      yaxis2=dict(title="n", overlaying="y", side="right"), legend=dict(orientation="h"))
    st.plotly_chart(fig, key="rf_chart")
    with st.expander("torchinfo summary"):
        st.code(a.summary, language="text")
    st.caption("RF is measured before global average pooling; the seeds also count GAP as one more layer "
               f"(that gives {a.trace.rf_with_gap:g} px here).")

st.subheader("Share and edit")
if st.button("Put this architecture and augmentation in the link", icon=":material/link:", key="share"):
    st.query_params.update(ui.share_query(net, ui.get_aug()))
    st.success("The address bar now holds the spec; copy it to share.")
with st.expander("Advanced: edit the JSON spec"):
    text = st.text_area("Architecture JSON", net.to_json(), height=300, key="json_text")
    if st.button("Apply JSON", key="apply_json"):
        try:
            candidate = Net.from_json(text)
            if problems := validate(candidate):
                raise SpecError(problems)
        except SpecError as e:
            st.error("**Not applied:**\n\n" + "\n".join(f"- {p}" for p in e.problems))
        else:
            ui.set_net(candidate)
            st.rerun()
    st.download_button("architecture.json", net.to_json(), "architecture.json", icon=":material/download:", key="dl_arch")
