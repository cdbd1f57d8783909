"""The fast modules must compute the same function as the torch modules they replace."""
import pytest
import torch
from torch import nn

from playground.specs.presets import preset_net
from playground.training.builder import build_model
from playground.training.fastops import FastDropout, PolyphaseConv2d, SubsampledConv2d, ZeroPadConv2d


def same_conv(ref: nn.Conv2d, fast: nn.Conv2d, x: torch.Tensor):
    """``fast`` (given ``ref``'s weights) computes what ``ref`` does on ``x``: outputs, input and weight gradients;
    returns both outputs and both inputs for the caller's own checks."""
    fast.load_state_dict(ref.state_dict())
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [m(v) for m, v in zip((ref, fast), xs)]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    g = torch.randn_like(outs[0])
    for out in outs:
        out.backward(g)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-4)
    return outs, xs


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,stride,padding,groups", [(32, 2, 2, 8), (15, 2, 0, 1), (9, 3, 3, 4)])
def test_subsampled_conv_matches_dilated_strided_conv(size, stride, padding, groups, channels_last):
    torch.manual_seed(0)
    ref = nn.Conv2d(8, 8, 3, stride=stride, dilation=stride, padding=padding, groups=groups)
    fast = SubsampledConv2d(8, 8, 3, stride=stride, dilation=stride, padding=padding, groups=groups)
    x = torch.randn(4, 8, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    _, xs = same_conv(ref, fast, x)
    if channels_last:
        assert xs[1].grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,kernel,stride,dilation,padding,groups", [
    (1, 3, 1, 1, 1, 8), (2, 3, 1, 1, 1, 8), (2, 3, 2, 1, 1, 1), (3, 5, 1, 1, 2, 4), (4, 3, 1, 2, 2, 8),
    (3, 5, 1, 1, (2, 1), 8), (8, 3, 1, 1, 1, 8)])  # the last: a map the kernel fits, the plain path
def test_zero_pad_conv_matches_conv_on_maps_smaller_than_its_kernel(size, kernel, stride, dilation, padding, groups,
                                                                   channels_last):
    torch.manual_seed(0)
    kw = dict(stride=stride, dilation=dilation, padding=padding, groups=groups)
    ref, fast = nn.Conv2d(8, 8, kernel, **kw), ZeroPadConv2d(8, 8, kernel, **kw)
    x = torch.randn(5, 8, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs, xs = same_conv(ref, fast, x)
    torch.testing.assert_close(fast.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-4)
    if channels_last and size > 1:
        assert outs[1].is_contiguous(memory_format=torch.channels_last)
        assert xs[1].grad.is_contiguous(memory_format=torch.channels_last)


def test_every_zero_padded_conv_of_a_preset_takes_the_small_map_path():
    """seed-004's last dilated conv subsamples a 4x4 map to 2x2 under a 3x3 kernel."""
    model = build_model(preset_net("seed-004"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
    assert convs and all(isinstance(m, (ZeroPadConv2d, SubsampledConv2d, PolyphaseConv2d)) for m in convs)
    assert not ZeroPadConv2d.applies(0, "zeros") and not ZeroPadConv2d.applies(1, "replicate")


def test_subsampled_conv_applies_only_where_exact():
    assert SubsampledConv2d.applies(2, 2, 2, "zeros")
    assert not SubsampledConv2d.applies(2, 2, 1, "zeros")  # odd padding puts taps on odd pixels
    assert not SubsampledConv2d.applies(1, 2, 2, "zeros")
    assert not SubsampledConv2d.applies(2, 2, 2, "reflect")


@pytest.mark.parametrize("p", [0.05, 0.2, 0.3])  # drawn positions up to 0.2, 16-bit words above
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_dropout_rate_scale_and_gradient(p, channels_last):
    torch.manual_seed(0)
    x = torch.ones(64, 16, 16, 16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    drop = FastDropout(p).train()
    y = drop(x)
    kept = y != 0
    n = kept.numel()
    # dropped fraction within 5 standard errors of p (drawing n*p positions, repeats and all, would
    # drop about p^2/2 too few: caught at p = 0.2 here and by the count test below)
    assert abs((1 - kept.float().mean().item()) - p) < 5 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)), atol=1e-4, rtol=1e-4)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(sum)/dx equals the mask, scaled
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert drop.eval()(x) is x


@pytest.mark.parametrize("p", [0.05, 0.5])
def test_fast_dropout_masks_are_independent_across_positions(p):
    torch.manual_seed(1)
    y = FastDropout(p).train()(torch.ones(64, 16, 16, 16)) != 0
    # neighbouring elements (which share one 64-bit random word at p = 0.5) must not be correlated
    a, b = y.flatten()[0::2].float(), y.flatten()[1::2].float()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(corr) < 0.01


def test_fast_dropout_count_varies_like_a_binomial():
    """iid Bernoulli(p) drops give a Binomial(n, p) count: a fixed or Poisson count would not."""
    torch.manual_seed(2)
    n, p = 1000, 0.05
    drop = FastDropout(p).train()
    counts = torch.tensor([(drop(torch.ones(n)) == 0).sum().item() for _ in range(800)], dtype=torch.float64)
    assert abs(counts.mean().item() - n * p) < 5 * (n * p * (1 - p) / 800) ** 0.5
    assert abs(counts.var().item() / (n * p * (1 - p)) - 1) < 0.25  # Poisson's would be 1.05, fixed 0


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_fast_dropout_backward_masks_the_same_elements_whatever_the_gradient_layout(p):
    torch.manual_seed(3)
    x = torch.ones(8, 6, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = FastDropout(p).train()(x)
    y.backward(torch.ones(8, 6, 5, 5))  # an NCHW gradient for an NHWC output
    torch.testing.assert_close(x.grad, y.detach())
    xt = torch.ones(6, 40).t().requires_grad_()  # neither layout: a transposed matrix
    yt = FastDropout(p).train()(xt)
    yt.sum().backward()
    torch.testing.assert_close(xt.grad, yt.detach())
    assert FastDropout(p).train()(torch.ones(0, 4)).shape == (0, 4)


@pytest.mark.parametrize("preset", ["seed-004", "seed-003"])
def test_fast_and_plain_models_agree(preset):
    torch.manual_seed(0)
    fast, plain = build_model(preset_net(preset)), build_model(preset_net(preset), fast=False)
    plain.load_state_dict(fast.state_dict())
    assert any(isinstance(m, SubsampledConv2d) for m in fast.modules()) == (preset == "seed-004")
    x = torch.randn(8, 3, 32, 32)
    fast.eval(), plain.eval()
    torch.testing.assert_close(fast(x), plain(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,dilation,kernel,groups", [(8, 2, 3, 8), (16, 4, 3, 1), (12, 2, 5, 4), (9, 2, 3, 8)])
def test_polyphase_conv_matches_dilated_conv(size, dilation, kernel, groups, channels_last):
    torch.manual_seed(0)
    pad = dilation * (kernel - 1) // 2
    ref = nn.Conv2d(8, 8, kernel, dilation=dilation, padding=pad, groups=groups)
    fast = PolyphaseConv2d(8, 8, kernel, dilation=dilation, padding=pad, groups=groups)
    x = torch.randn(3, 8, size, size)  # size 9 is not divisible by 2: the plain path
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs, _ = same_conv(ref, fast, x)
    assert outs[1].is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_polyphase_conv_applies_only_to_same_padding_stride_one():
    assert PolyphaseConv2d.applies(3, 1, 2, 2, "zeros")
    assert not PolyphaseConv2d.applies(3, 1, 2, 1, "zeros")
    assert not PolyphaseConv2d.applies(3, 2, 2, 2, "zeros")
    assert not PolyphaseConv2d.applies(3, 1, 1, 1, "zeros")
    assert not PolyphaseConv2d.applies(2, 1, 2, 1, "zeros")  # found by hypothesis: padding 1 is not a multiple of 2
