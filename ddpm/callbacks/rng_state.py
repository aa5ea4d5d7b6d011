"""The random-number streams in every checkpoint, so a resumed run draws what the uninterrupted run drew."""

import random

import lightning as L
import numpy as np
import torch


def rng_states() -> dict:
    """torch (CPU and every CUDA device), numpy and Python RNG states, as tensors, ints and lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "gauss": [has_gauss, gauss],
        },
        "python": [version, list(internal), gauss_next],
    }


def set_rng_states(states: dict) -> None:
    """Restore what ``rng_states`` returned (CUDA states only where the devices exist)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = states["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], *numpy["gauss"]))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class RNGState(L.Callback):
    """Saves the RNG states with each checkpoint and restores them on resume.

    Restored while Lightning loads the checkpoint, before the first training batch is drawn (the
    sanity check runs with its own RNG), so data shuffling continues exactly where it stopped.
    """

    def state_dict(self) -> dict:
        return rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict)
