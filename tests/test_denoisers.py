import pytest
import torch

from ddpm.denoisers import DenseDDPM, TransformerDDPM, UNet
from ddpm.denoisers.embedding import sinusoidal_embedding

CASES = [
    (UNet, (1, 8, 8), {}),
    (UNet, (1, 28, 28), {"base_channels": 16}),
    # Sizes that do not halve evenly (10 -> 5 -> 3 -> up 6, cropped to 5): the crop before each skip.
    (UNet, (1, 10, 10), {"base_channels": 8}),
    (UNet, (2, 6, 10), {"base_channels": 8}),
    (DenseDDPM, (32, 42), {"num_layers": 2, "mlp_dims": 64}),
    (TransformerDDPM, (32, 42), {"num_layers": 2, "num_heads": 4, "mlp_dims": 64, "embed_channels": 32}),
    (
        TransformerDDPM,
        (8, 6),
        {"num_layers": 1, "num_heads": 2, "mlp_dims": 16, "embed_channels": 8, "time_in_attention": True},
    ),
    (
        TransformerDDPM,
        (8, 6),
        {"num_layers": 2, "num_heads": 2, "mlp_dims": 16, "embed_channels": 8, "relative_attention": True},
    ),
    (
        TransformerDDPM,
        (8, 6),
        {"num_layers": 1, "num_heads": 2, "mlp_dims": 16, "embed_channels": 8, "self_condition": True},
    ),
]


@pytest.mark.parametrize("cls, shape, kwargs", CASES)
def test_shape_and_gradients_reach_every_parameter(cls, shape, kwargs):
    torch.manual_seed(0)
    net = cls(shape, **kwargs)
    if isinstance(net, UNet):  # its output conv starts at zero; give it weights so grads flow upstream
        torch.nn.init.normal_(net.conv_out[-1].weight, std=0.1)
    x, t = torch.randn(3, *shape), torch.tensor([0.0, 500.0, 999.0])
    out = net(x, t)
    assert out.shape == x.shape
    out.square().sum().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


@pytest.mark.parametrize("cls, shape, kwargs", CASES)
def test_output_depends_on_time(cls, shape, kwargs):
    torch.manual_seed(0)
    net = cls(shape, **kwargs)
    if isinstance(net, UNet):
        torch.nn.init.normal_(net.conv_out[-1].weight, std=0.1)
    x = torch.randn(1, *shape).expand(2, *shape)
    out = net(x, torch.tensor([10.0, 900.0]))
    assert not torch.allclose(out[0], out[1])


def test_transformer_output_depends_on_frame_positions():
    # Without the position encoding the encoder would be equivariant to permuting frames.
    torch.manual_seed(0)
    net = TransformerDDPM((6, 4), num_layers=1, num_heads=2, mlp_dims=16, embed_channels=8)
    x = torch.randn(1, 6, 4)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    out, out_perm = net(x, torch.zeros(1)), net(x[:, perm], torch.zeros(1))
    assert not torch.allclose(out[:, perm], out_perm, atol=1e-5)


def test_transformer_attention_mixes_every_frame_with_every_other():
    """Changing frame j changes the output at every frame i != j (32 frames, as the melody model)."""
    torch.manual_seed(0)
    frames = 32
    net = TransformerDDPM((frames, 42), num_layers=1, num_heads=4, mlp_dims=32, embed_channels=16).eval()
    x = torch.randn(1, frames, 42)
    perturbed = x.repeat(frames + 1, 1, 1)  # row 0 as is, row j + 1 with frame j moved
    perturbed[1:][torch.arange(frames), torch.arange(frames)] += 1.0
    with torch.no_grad():
        out = net(perturbed, torch.full((frames + 1,), 500.0))
    change = (out[1:] - out[:1]).abs().amax(dim=-1)  # (j, i): effect of frame j on output frame i
    off_diagonal = change[~torch.eye(frames, dtype=torch.bool)]
    assert off_diagonal.min().item() > 1e-4, (change < 1e-4).nonzero()[:8].tolist()


@pytest.mark.parametrize("time_in_attention", [False, True])
def test_time_reaches_attention_only_when_asked(time_in_attention):
    """Mittal's layout: the attention layers see no time; with ``time_in_attention`` they do."""
    torch.manual_seed(0)
    net = TransformerDDPM((8, 6), 1, 2, 1, 16, 8, time_in_attention=time_in_attention).eval()
    seen = []
    net.encoder.register_forward_hook(lambda module, args, out: seen.append(out))
    x = torch.randn(1, 8, 6).expand(2, 8, 6)
    with torch.no_grad():
        net(x, torch.tensor([10.0, 900.0]))
    assert torch.allclose(seen[0][0], seen[0][1]) != time_in_attention


def test_relative_attention_starts_as_the_plain_model():
    """The offset biases start at zero: the same weights give the same output with and without them."""
    torch.manual_seed(0)
    kwargs = {"num_layers": 2, "num_heads": 4, "mlp_dims": 32, "embed_channels": 16}
    rel, plain = TransformerDDPM((8, 6), relative_attention=True, **kwargs), TransformerDDPM((8, 6), **kwargs)
    plain.load_state_dict({k: v for k, v in rel.state_dict().items() if k != "relative_bias"})
    x, t = torch.randn(3, 8, 6), torch.tensor([0.0, 500.0, 999.0])
    assert torch.allclose(rel(x, t), plain(x, t), atol=1e-5)


def test_relative_attention_bias_reads_the_frame_at_its_offset():
    """A large bias at offset -2 in every head makes frame i attend only to frame i - 2: moving frame
    i - 2 changes output i, moving frame i - 3 or i + 2 does not (it does without the bias). The same
    in training mode and in inference mode (torch's fused inference layer takes no per-head mask)."""
    torch.manual_seed(0)
    frames, heads = 8, 2
    net = TransformerDDPM((frames, 6), 1, heads, 1, 16, 8, relative_attention=True)
    x, t = torch.randn(1, frames, 6), torch.tensor([300.0])
    i = 5

    def effect(j):
        moved = x.clone()
        moved[0, j] += 1.0
        return (net(moved, t) - net(x, t))[0, i].abs().max().item()

    assert min(effect(3), effect(2), effect(7)) > 1e-3  # zero bias: every frame reaches frame i
    with torch.no_grad():
        net.relative_bias[:, :, frames - 1 - 2] = 1e4  # offset (key - query) = -2
    assert effect(3) > 1e-3 and effect(2) < 1e-6 and effect(7) < 1e-6
    train_out = net(x, t)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x, t), train_out, atol=1e-5)


@pytest.mark.parametrize("relative_attention", [False, True])
def test_transformer_examples_are_independent_of_their_batch(relative_attention):
    """Permuting the batch permutes the outputs, and an example's output does not depend on the others
    (with relative attention: each example gets every head's own offset biases)."""
    torch.manual_seed(0)
    net = TransformerDDPM((8, 6), 2, 2, mlp_dims=32, embed_channels=16, relative_attention=relative_attention).eval()
    if relative_attention:
        torch.nn.init.normal_(net.relative_bias, std=3.0)
    x, t = torch.randn(5, 8, 6), torch.tensor([0.0, 10.0, 200.0, 500.0, 999.0])
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out = net(x, t)
        assert torch.allclose(net(x[perm], t[perm]), out[perm], atol=1e-5)
        assert torch.allclose(net(x[2:3], t[2:3]), out[2:3], atol=1e-5)


def test_sinusoidal_embedding_values():
    emb = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 4)
    # frequencies 1 and 1e-4 for half = 2: [sin(p), sin(p/1e4), cos(p), cos(p/1e4)]
    expected = torch.tensor([[0, 0, 1, 1], [0.841470984, 1e-4, 0.540302306, 1.0]])
    assert torch.allclose(emb, expected, atol=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="channels, height, width"):
        UNet((32, 42))
    with pytest.raises(ValueError, match="frames, dims"):
        TransformerDDPM((1, 8, 8))


def test_self_condition_reads_the_estimate_and_none_is_zeros():
    """Self-conditioning (Chen et al. 2023): a second input of x_0's shape; ``None`` stands for zeros."""
    torch.manual_seed(0)
    kwargs = {"num_layers": 1, "num_heads": 2, "mlp_dims": 16, "embed_channels": 8}
    net = TransformerDDPM((8, 6), self_condition=True, **kwargs)
    assert net.input.in_features == 12 and TransformerDDPM((8, 6), **kwargs).input.in_features == 6
    x, t, estimate = torch.randn(2, 8, 6), torch.tensor([10.0, 900.0]), torch.randn(2, 8, 6)
    assert torch.equal(net(x, t), net(x, t, torch.zeros_like(x)))
    assert not torch.allclose(net(x, t, estimate), net(x, t), atol=1e-4)
    # The estimate's gradient reaches the input weights' second half.
    net(x, t, estimate).square().sum().backward()
    assert net.input.weight.grad[:, 6:].abs().sum() > 0


# The blocks against their closed forms (session 29's mutation audit).


def test_relative_attention_layer_is_torchs_layer_with_a_per_head_float_mask():
    """``_pre_ln_layer`` rewrites the pre-LN encoder layer to add a bias per head: it must equal torch's own
    layer given the same bias as a [B * heads, L, L] float mask (head h of example b at row b * heads + h)."""
    from ddpm.denoisers.transformer import _pre_ln_layer

    torch.manual_seed(0)
    frames, heads = 6, 2
    net = _relative_net(frames, heads)
    torch.nn.init.normal_(net.relative_bias, std=2.0)
    layer, bias = net.encoder.layers[0], net.relative_bias[0][:, net.offset_index]  # (heads, L, L)
    h = torch.randn(3, frames, 8)
    with torch.no_grad():
        ours = _pre_ln_layer(layer, h, bias, heads)
        torchs = layer(h, src_mask=bias.repeat(3, 1, 1))
    assert torch.allclose(ours, torchs, atol=1e-5)
    assert not torch.allclose(bias[0], bias[1])  # the heads' biases differ, so a shared mask would not pass


def _relative_net(frames, heads):
    from ddpm.denoisers import TransformerDDPM

    return TransformerDDPM((frames, 3), 1, heads, 1, 16, 8, relative_attention=True)


def test_dense_res_block_is_two_film_layers_and_a_skip():
    """``x + linear2(silu(FiLM(LN2(linear1(silu(FiLM(LN1(x))))))))`` with FiLM(h) = h * (1 + scale) + shift."""
    from torch.nn import functional as F

    from ddpm.denoisers.embedding import DenseResBlock

    torch.manual_seed(0)
    block = DenseResBlock(6, 4)
    x, emb = torch.randn(2, 3, 6), torch.randn(2, 4)
    scale, shift = block.film.proj(emb)[:, None].chunk(2, dim=-1)
    film = lambda h: h * (1 + scale) + shift  # noqa: E731
    h = block.linear1(F.silu(film(F.layer_norm(x, (6,)))))
    expected = x + block.linear2(F.silu(film(F.layer_norm(h, (6,)))))
    with torch.no_grad():
        assert torch.allclose(block(x, emb), expected, atol=1e-6)
        torch.nn.init.zeros_(block.linear2.weight)
        torch.nn.init.zeros_(block.linear2.bias)
        assert torch.equal(block(x, emb), x)  # the skip: a zeroed last layer passes x through


def test_linear_attention_is_a_residual_average_of_values():
    """Softmax over pixels for the keys and over features for the queries: each pixel's output (before
    ``to_out``) is ``scale`` times an average of the values, so pixels that all hold one value give
    ``scale * v``; the block adds its input back (a zeroed ``to_out`` is the identity)."""
    from ddpm.denoisers.unet import LinearAttention

    torch.manual_seed(0)
    attn = LinearAttention(16, heads=2, dim_head=4)
    x = torch.randn(2, 16, 1, 1).expand(2, 16, 3, 5).contiguous()  # 15 pixels, each the same
    seen = []
    attn.to_out.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        out = attn(x)
        v = attn.to_qkv(attn.norm(x)).reshape(2, 3, 8, 3, 5)[:, 2]  # (B, heads * dim_head, H, W)
        assert torch.allclose(seen[0], attn.scale * v, atol=1e-6)
        torch.nn.init.zeros_(attn.to_out.weight)
        torch.nn.init.zeros_(attn.to_out.bias)
        assert torch.equal(attn(x), x) and not torch.equal(out, x)
