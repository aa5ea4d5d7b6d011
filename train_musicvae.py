"""Train the 2-bar melody MusicVAE on the folk corpus: ``python train_musicvae.py`` (conf/train_musicvae.yaml)."""

import hydra
from omegaconf import DictConfig

from ddpm.music.corpus import load_melodies, split_by_title
from ddpm.music.pipeline import train_musicvae, windows


@hydra.main(version_base="1.3", config_path="conf", config_name="train_musicvae")
def main(cfg: DictConfig) -> None:
    corpus = cfg.corpus
    tunes, report = load_melodies(corpus.cache_dir, list(corpus.collections), corpus.midi_dir, corpus.workers)
    train, evals = split_by_title(tunes, corpus.eval_fraction, corpus.seed)
    print(f"{report['tunes']} tunes: {len(train)} train, {len(evals)} eval; skipped {report['skipped']}")
    output_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    train_musicvae(windows(train), windows(evals), cfg.vae, cfg.out, output_dir)
    print(f"saved {cfg.out}")


if __name__ == "__main__":
    main()
