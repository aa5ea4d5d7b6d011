"""Checkpoints written before codecs existed: their data config held the decoding settings and their
DataModule state the latent statistics. ``upgrade_checkpoint`` rewrites such a checkpoint (in memory)
into today's form: ``run_config.codec`` and ``checkpoint["codec"]``."""

import copy

IMAGE_SHAPES = {"DigitsDataModule": [1, 8, 8], "MNISTDataModule": [1, 28, 28]}


def upgrade_checkpoint(ckpt: dict) -> dict:
    """``ckpt`` unchanged when it has a codec; otherwise a copy with the codec config and state added."""
    if "codec" in ckpt or "codec" in ckpt.get("run_config", {}):
        return ckpt
    ckpt = copy.deepcopy(ckpt)
    cfg = ckpt["run_config"]
    data = cfg.get("data") or {}
    kind = str(data.get("_target_", "")).rsplit(".", 1)[-1]
    if kind in IMAGE_SHAPES:
        cfg["codec"] = {"_target_": "ddpm.codecs.images.ImageCodec"}
        ckpt["codec"] = {"sample_shape": IMAGE_SHAPES[kind]}
        return ckpt
    state = ckpt.get(kind) or {}
    if kind == "MelodyDataModule":
        frames, dim = int(data["frames"]), int(data["vae"]["model"]["z_dim"])
        cfg["codec"] = {"_target_": "ddpm.codecs.melodies.MelodyCodec", "musicvae": data["musicvae"]}
        cfg["codec"] |= {k: data[k] for k in ("temperature", "render_n", "qpm", "seed") if k in data}
        cfg["data"] = {
            "_target_": "ddpm.data.mvae.LatentDataModule",
            "dir": data["dir"],
            "input_shape": [frames, dim],
            "slice_dims": f"{data['dir']}/active_dims.pkl",
        } | {k: data[k] for k in ("normalize", "batch_size", "num_workers") if k in data}
        space = {"dim": dim, "seq_len": frames}
    elif kind == "LatentDataModule":
        cfg["codec"] = {"_target_": "ddpm.codecs.latents.LatentCodec", "seed": data.get("seed", 0)}
        cfg["data"] = {k: v for k, v in data.items() if k != "seed"}
        frames, dim = (int(s) for s in data["input_shape"])
        space = {"dim": dim, "seq_len": int(data.get("seq_len") or frames)}
    else:
        return ckpt  # not ours: restore() reports what is missing
    if state:
        space |= {"dims": state.get("slice_dims"), "data_min": state["data_min"], "data_max": state["data_max"]}
        ckpt["codec"] = {"space": space | {"normalize": bool(data.get("normalize", True))}}
    return ckpt
