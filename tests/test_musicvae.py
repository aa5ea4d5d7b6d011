import numpy as np
import torch

from ddpm.music.events import NUM_CLASSES
from ddpm.music.musicvae import MusicVAE, kl_per_dim, transpose_events
from ddpm.music.vae_module import MusicVAEModule


def test_shapes():
    model = MusicVAE(z_dim=16, encoder_hidden=8, decoder_hidden=12, decoder_layers=2)
    events = torch.randint(0, NUM_CLASSES, (5, 32))
    mu, sigma = model.encode(events)
    assert mu.shape == sigma.shape == (5, 16) and (sigma > 0).all()
    assert model.decode_logits(mu, events).shape == (5, 32, NUM_CLASSES)
    assert model.generate(mu).shape == (5, 32)
    sampled = model.generate(mu, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (5, 32) and sampled.max() < NUM_CLASSES


def test_kl_closed_form():
    mu, sigma = torch.tensor([[0.0, 1.0, 0.5]]), torch.tensor([[1.0, 1.0, 2.0]])
    expected = torch.tensor([[0.0, 0.5, 0.5 * (0.25 + 4 - 1) - float(np.log(2.0))]])
    assert torch.allclose(kl_per_dim(mu, sigma), expected)


def test_teacher_forcing_is_causal():
    torch.manual_seed(0)
    model = MusicVAE(z_dim=8, encoder_hidden=8, decoder_hidden=16)
    z = torch.randn(1, 8)
    a = torch.randint(0, NUM_CLASSES, (1, 32))
    b = a.clone()
    b[0, 20:] = (b[0, 20:] + 1) % NUM_CLASSES
    la, lb = model.decode_logits(z, a), model.decode_logits(z, b)
    assert torch.allclose(la[:, :21], lb[:, :21]) and not torch.allclose(la[:, 21:], lb[:, 21:])


def test_transposition_shifts_notes_only_and_respects_range():
    events = torch.tensor([[0, 1, 40, 0, 50, 1], [89, 0, 0, 1, 2, 0]])
    out = transpose_events(events, torch.tensor([3, 2]))
    assert out[0].tolist() == [0, 1, 43, 0, 53, 1]
    assert out[1].tolist() == events[1].tolist()  # 89 + 2 would leave the range: unchanged


def test_tiny_model_overfits_windows_to_exact_reconstruction():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    windows = torch.from_numpy(rng.choice(NUM_CLASSES, (8, 32), p=np.r_[0.5, 0.1, np.full(88, 0.4 / 88)]))
    model = MusicVAE(z_dim=16, encoder_hidden=32, decoder_hidden=64)
    module = MusicVAEModule(model, free_bits=0.0, max_beta=0.0, transpose=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = module.losses(windows)["recon"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mu, _ = model.encode(windows)
    assert torch.equal(model.generate(mu), windows)


def test_scheduled_sampling_endpoints():
    torch.manual_seed(0)
    model = MusicVAE(z_dim=8, encoder_hidden=8, decoder_hidden=16, decoder_layers=2)
    z = torch.randn(3, 8)
    a = torch.randint(0, NUM_CLASSES, (3, 32))
    # step by step with (almost) no own samples = the one-call teacher-forced decoder
    assert torch.allclose(model.decode_logits(z, a, sampling_probability=1e-12), model.decode_logits(z, a), atol=1e-5)
    # always own samples: the true history is never seen, only the first step's (zero) input
    b = a.clone()
    b[:, :-1] = (b[:, :-1] + 7) % NUM_CLASSES
    torch.manual_seed(1)
    la = model.decode_logits(z, a, sampling_probability=1.0)
    torch.manual_seed(1)
    lb = model.decode_logits(z, b, sampling_probability=1.0)
    assert torch.equal(la, lb) and not torch.allclose(la, model.decode_logits(z, a))


def test_inverse_sigmoid_sampling_schedule():
    module = MusicVAEModule(MusicVAE(z_dim=8, encoder_hidden=8, decoder_hidden=8), sampling_rate=1000.0)
    assert abs(module.sampling_probability(0) - 1 / 1001) < 1e-12
    assert abs(module.sampling_probability(round(1000 * np.log(1000))) - 0.5) < 1e-3
    assert module.sampling_probability(20_000) > 0.999 and module.sampling_probability(10**9) == 1.0
    assert MusicVAEModule(MusicVAE(z_dim=8, encoder_hidden=8, decoder_hidden=8)).sampling_probability(10**6) == 0.0


def test_windows_keep_their_order_through_batched_encoding_and_decoding():
    """``encode_windows`` in batches and ``decode_latents`` of sequences give each window its own result."""
    from ddpm.music.vae_io import decode_latents, encode_windows

    torch.manual_seed(0)
    model = MusicVAE(z_dim=8, encoder_hidden=8, decoder_hidden=16).eval()
    events = np.random.default_rng(0).integers(0, NUM_CLASSES, (5, 32))
    mu, sigma = encode_windows(model, events, batch_size=2)
    with torch.no_grad():
        one_go = model.encode(torch.from_numpy(events))
    np.testing.assert_allclose(mu, one_go[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(sigma, one_go[1].numpy(), atol=1e-6)
    latents = np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32)
    melodies = decode_latents(model, latents)  # [2, 3 * 32]
    with torch.no_grad():
        for i, j in ((0, 0), (1, 2), (1, 1)):
            window = model.generate(torch.from_numpy(latents[i, j][None]))[0].numpy()
            assert np.array_equal(melodies[i, 32 * j : 32 * (j + 1)], window)
