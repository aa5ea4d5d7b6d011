import pytest
import torch

from ddpm.denoisers import DenseDDPM, TransformerDDPM, UNet
from ddpm.denoisers.embedding import sinusoidal_embedding

CASES = [
    (UNet, (1, 8, 8), {}),
    (UNet, (1, 28, 28), {"base_channels": 16}),
    (DenseDDPM, (32, 42), {"num_layers": 2, "mlp_dims": 64}),
    (TransformerDDPM, (32, 42), {"num_layers": 2, "num_heads": 4, "mlp_dims": 64, "embed_channels": 32}),
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


def test_transformer_is_permutation_sensitive_via_positions():
    torch.manual_seed(0)
    net = TransformerDDPM((6, 4), num_layers=1, num_heads=2, mlp_dims=16, embed_channels=8)
    x = torch.randn(1, 6, 4)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    out, out_perm = net(x, torch.zeros(1)), net(x[:, perm], torch.zeros(1))
    assert not torch.allclose(out[:, perm], out_perm, atol=1e-5)


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
