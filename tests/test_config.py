import pytest
from hydra.utils import instantiate

from ddpm.errors import ConfigError
from ddpm.latent_space import LatentSpace
from ddpm.training import build_model, refuse_early
from tests.helpers import compose_train

VALID = [
    ("unet", "digits"),
    ("unet", "mnist"),
    ("dense", "digits"),
    ("dense", "mnist"),
    ("dense", "mvae"),
    ("transformer", "mvae"),
]
SMALL = {"unet": "model.base_channels=8", "dense": "model.mlp_dims=64", "transformer": "model.mlp_dims=64"}


def _fitted(cfg):
    """The run's codec fitted on its data (images: no files read)."""
    codec = instantiate(cfg.codec)
    codec.fit(instantiate(cfg.data))
    return codec


@pytest.mark.parametrize("model, data", VALID)
def test_model_data_configs_compose_and_instantiate(model, data, tmp_path):
    cfg = compose_train([f"model={model}", f"data={data}", "diffusion=ddpm", SMALL[model]], tmp_path)
    datamodule, codec = instantiate(cfg.data), instantiate(cfg.codec)
    if data == "mvae":  # what fit takes from the data, without Mittal's files
        codec.space = LatentSpace(dim=512, seq_len=32, dims=None)
    else:
        codec.fit(datamodule)
    module = build_model(cfg, codec)
    assert tuple(module.denoiser.sample_shape) == datamodule.sample_shape and module.codec is codec
    assert module.diffusion.clip_x_start is (data != "mvae")  # clip images; latents only when asked
    assert type(codec).__name__ == ("LatentCodec" if data == "mvae" else "ImageCodec")
    for name in ("trainer", "logger"):
        assert instantiate(cfg[name], **({"callbacks": []} if name == "trainer" else {})) is not None
    for callback in cfg.callbacks.values():
        assert instantiate(callback) is not None


@pytest.mark.parametrize("clip", [None, True, False])
def test_latents_clip_only_when_asked_and_to_the_box_of_their_train_split(clip, tmp_path):
    value = {None: "null", True: "true", False: "false"}[clip]
    cfg = compose_train(["data=mvae", "model=dense", SMALL["dense"], f"diffusion.clip_x_start={value}"], tmp_path)
    codec = instantiate(cfg.codec)
    codec.space = LatentSpace(dim=8, seq_len=4, dims=None, data_min=-3.0, data_max=5.0, normalize="none")
    diffusion = build_model(cfg, codec).diffusion
    assert diffusion.clip_x_start is bool(clip) and diffusion.clip_value == 5.0
    cfg = compose_train(["data=mvae", "model=dense", SMALL["dense"], "+diffusion.clip_value=2.5"], tmp_path)
    assert build_model(cfg, codec).diffusion.clip_value == 2.5  # a bound given wins over the data's
    images = compose_train(["data=digits", "model=dense", SMALL["dense"]], tmp_path)
    assert build_model(images, _fitted(images)).diffusion.clip_value == 1.0
    with pytest.raises(ConfigError, match="clip_value must be a positive number, got -2"):
        refuse_early(compose_train(["+diffusion.clip_value=-2"], tmp_path))


@pytest.mark.parametrize("setting", ["module.optimizer.weight_decay=-1", "+module.optimizer.betas=[0.9,2.0]"])
def test_a_bad_optimizer_setting_is_refused_before_the_prepare_stage(setting, tmp_path):
    with pytest.raises(ConfigError, match=r"module.optimizer \(torch.optim.AdamW\): Invalid"):
        refuse_early(compose_train([setting], tmp_path))


def test_transformer_on_images_is_a_clear_error(tmp_path):
    cfg = compose_train(["model=transformer", "data=digits"], tmp_path)
    with pytest.raises(Exception, match="frames, dims"):  # Hydra wraps the ValueError
        build_model(cfg, _fitted(cfg))


@pytest.mark.parametrize(
    "schedule, first, middle, last",
    [
        ("linear_betas", 1e-4, 0.01004004, 0.02),  # Ho et al.: 1e-4 -> 0.02
        ("cosine_betas", 4.128422e-05, 0.003145886, 0.999),  # Nichol & Dhariwal, clipped at 0.999
        ("mittal_betas", 1e-6, 0.004995495, 0.01),  # Mittal et al.: 1e-6 -> 0.01
    ],
)
def test_schedule_swaps_by_target(schedule, first, middle, last, tmp_path):
    cfg = compose_train(["diffusion=ddpm", f"diffusion.betas._target_=ddpm.schedules.{schedule}"], tmp_path)
    diffusion = instantiate(cfg.diffusion, clip_x_start=False)
    assert diffusion.num_timesteps == 1000
    betas = diffusion.betas[[0, 499, 999]].tolist()
    assert betas == pytest.approx([first, middle, last], rel=1e-6)


def test_cosine_schedule_on_the_main_job_keeps_its_conditioning(tmp_path):
    """The README's override for the cosine schedule under `mittal`, whose betas carry beta_start / beta_end."""
    drop = ["~diffusion.betas.beta_start", "~diffusion.betas.beta_end"]
    cfg = compose_train(["diffusion.betas._target_=ddpm.schedules.cosine_betas", *drop], tmp_path)
    diffusion = instantiate(cfg.diffusion, clip_x_start=False)
    assert diffusion.betas[[0, 999]].tolist() == pytest.approx([4.128422e-05, 0.999], rel=1e-6)
    assert cfg.diffusion.time_condition == "noise_level"


def test_scheduler_group(tmp_path):
    cfg = compose_train(["experiment=digits", "scheduler=cosine", "model.base_channels=8"], tmp_path)
    module = build_model(cfg, _fitted(cfg))
    config = module.configure_optimizers()
    assert type(config["lr_scheduler"]["scheduler"]).__name__ == "CosineAnnealingLR"


def test_default_is_the_folk_melody_chain(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.data._target_ == "ddpm.data.mvae.LatentDataModule" and cfg.data.dir == cfg.prepare.out_dir
    assert cfg.prepare._target_ == "ddpm.music.prepare.MelodyLatents"
    assert cfg.codec._target_ == "ddpm.codecs.melodies.MelodyCodec"
    assert cfg.model._target_ == "ddpm.denoisers.TransformerDDPM" and cfg.model.mlp_dims == 512
    mittal = compose_train(["experiment=mittal_melody"], tmp_path)
    assert cfg.model.time_in_attention and not mittal.model.time_in_attention
    assert cfg.model.relative_attention and not mittal.model.relative_attention
    assert cfg.data.normalize == "centered" and mittal.data.normalize == "minmax"
    digits = compose_train(["experiment=digits"], tmp_path)
    assert cfg.module.ema_decay == 0.995 and mittal.module.ema_decay == digits.module.ema_decay == 0.999
    assert (
        cfg.diffusion.betas._target_ == "ddpm.schedules.mittal_betas" and cfg.diffusion.time_condition == "noise_level"
    )
    assert cfg.sampler._target_ == "ddpm.samplers.DPMSolverPP2MSampler" and (cfg.sampler.steps, cfg.sampler.sde) == (
        40,
        True,
    )
    digits = compose_train(["experiment=digits"], tmp_path)
    assert (
        digits.model._target_ == "ddpm.denoisers.UNet"
        and digits.diffusion.betas._target_ == "ddpm.schedules.linear_betas"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ckpt={a:1}"], r"ckpt={a:1}: expected a value \(a path, a number\) for ckpt"),
        (["ckpt=[1,2]"], r"ckpt=\[1,2\]: expected a value"),
        (["ckpt=x", "refill=7"], None),  # refill: a string, checked when sampling (set_refill)
        (["ckpt=x", "+foo=1"], r"\+foo=1: sample.py has no key foo \(conf/sample.yaml lists them"),  # not ignored
        (["ckpt=x", "++tempo=3"], r"\+\+tempo=3: sample.py has no key tempo"),
        (["ckpt=x", "+sampler.resample=2"], None),  # a sampler's own argument that its file leaves out
        (["ckpt=x", "++seed=3"], None),  # ++ sets a key that is there: Hydra's "set or add"
        (["ckpt=x", "out_dir=${hydra:runtime.cwd}/s"], None),  # resolves inside the run, not before it
        (["ckpt=x", "render_n=${oc.env:NO_SUCH_VAR}"], r"render_n=.*: cannot be resolved .*NO_SUCH_VAR"),
    ],
)
def test_required_values_take_one_value(argv, message):
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    if message is None:
        assert check_overrides("sample", argv).ckpt == "x"
        return
    with pytest.raises(ConfigError, match=message):
        check_overrides("sample", argv)


@pytest.mark.parametrize("config", ["sample", "evaluate", "serve"])
def test_a_key_added_to_a_sampling_entry_point_is_refused_but_not_one_added_to_training(config):
    """The sampling entry points read their own keys only, so a ``+key`` would go unread; training's config
    is handed whole to constructors (``+trainer.limit_train_batches``), so there it is taken."""
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"\+foo=1: {config}.py has no key foo \(conf/{config}.yaml lists them"):
        check_overrides(config, ["ckpt=x", "+foo=1"])
    assert check_overrides("train", ["+trainer.limit_train_batches=2"]).trainer.limit_train_batches == 2


@pytest.mark.parametrize(
    "config, group",
    [("train", "model"), ("train", "diffusion"), ("sample", "sampler"), ("evaluate", "sampler"), ("serve", "sampler")],
)
def test_a_config_group_set_to_null_is_a_one_line_error(config, group):
    """Hydra raises a bare ValueError for ``group=null``; the check turns it into the entry point's one line."""
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        check_overrides(config, [f"{group}=null"])
    assert str(e.value) == (
        f"bad command line {group}=null: Config group override must be a string or a list. Got NoneType"
    )


def test_the_cpu_trainer_takes_a_precision_without_a_plus(tmp_path):
    """fp32 by default; ``trainer.precision=bf16-mixed`` overrides it (the README's option for CPUs with bf16), and
    a precision Lightning does not know is a one-line error naming it."""
    from hydra.utils import instantiate

    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    assert compose_train([], tmp_path).trainer.precision == "32-true"
    cfg = compose_train(["trainer.precision=bf16-mixed"], tmp_path)
    assert instantiate(cfg.trainer, logger=False).precision == "bf16-mixed"
    with pytest.raises(ConfigError, match=r"trainer.precision='bf8': expected one of \["):
        check_overrides("train", ["trainer.precision=bf8"])


@pytest.mark.parametrize("form", ["", "++"])
@pytest.mark.parametrize("key", ["devices", "precision", "accelerator"])
def test_a_mapping_for_a_trainer_setting_is_refused(key, form):
    """Found by the fuzz run (``trainer.devices={a:1}`` was accepted): a mapping is not one value, however set."""
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"trainer.{key}={{'a': 1}}: expected (a number|one of)"):
        check_overrides("train", [f"{form}trainer.{key}={{a:1}}"])
    with pytest.raises(ConfigError, match=r"trainer.precision={'a': 1}: expected one of"):
        check_overrides("train", ["trainer=ddp_cpu", "+trainer.precision={a:1}"])  # a key its file leaves out


def test_a_hydra_interpolation_on_the_command_line_is_left_to_the_run():
    """``${paths.output_dir}`` resolves through ``${hydra:runtime.output_dir}``, set only inside the run."""
    from omegaconf import OmegaConf

    from ddpm.config_check import check_overrides

    cfg = check_overrides("train", ["callbacks.loss_plot.path=${paths.output_dir}/other.png"])
    assert OmegaConf.to_container(cfg.callbacks.loss_plot, resolve=False)["path"] == "${paths.output_dir}/other.png"


def test_every_value_of_a_sweep_is_checked_before_its_first_job_runs():
    """Found by a probe: ``-m n=2,abc`` ran job 0 and wrote its samples before job 1's n=abc failed."""
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match="n=abc: expected an integer for n"):
        check_overrides("sample", ["-m", "ckpt=x", "n=2,abc"])
    with pytest.raises(ConfigError, match="seed=-1: expected an integer >= 0"):
        check_overrides("train", ["-m", "experiment=digits", "model.base_channels=16,32", "seed=0,-1"])
    assert check_overrides("sample", ["-m", "ckpt=x", "n=2,3", "seed=0,1"]).n == 2  # job 0's config
    assert check_overrides("train", ["-m", "model=glob(*)"]) is None  # Hydra's to expand: no traceback here
    with pytest.raises(ConfigError, match=r"trainer.devices={'a': 1}: expected a number of devices"):
        check_overrides("train", ["-m", "trainer.devices=1,{a:1}"])  # a later value, checked where it sits
    with pytest.raises(ConfigError, match="In 'train': Could not find 'model/nope'"):
        check_overrides("train", ["-m", "model=dense,nope"])  # a later group choice: composed as its job


@pytest.mark.parametrize(
    "argv, outcome",
    [
        (["--foo", "ckpt=x"], r"unrecognized arguments: --foo \(sample.py takes settings as key=value"),
        (["ckpt=x", "--seeed=3"], "unrecognized arguments: --seeed=3"),  # argparse printed an 8-line usage
        (["--run", "ckpt=x", "tempo=3"], "Could not override 'tempo'"),  # --run turned every check off
        (["-r", "ckpt=x", "n=0"], "n=0: expected an integer >= 1"),
        (["--multi", "ckpt=x", "n=1,0"], "n=0: expected an integer >= 1"),  # an abbreviation Hydra takes
        (["-m", "--", "ckpt=x", "n=0"], "n=0: expected an integer >= 1"),
        (["--cfg", "job", "ckpt=x"], None),  # Hydra's own flags: the command is Hydra's
        (["--config-name=sample", "ckpt=x"], None),
        (["-cjob", "ckpt=x"], None),
        (["--hel"], None),
        (["--version"], None),
    ],
)
def test_flags_hydra_does_not_know_are_refused_and_run_flags_keep_the_checks(argv, outcome):
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    if outcome is None:
        assert check_overrides("sample", argv) is None
        return
    with pytest.raises(ConfigError, match=outcome):
        check_overrides("sample", argv)


def test_hydras_own_settings_are_checked_against_its_groups_and_schema():
    """``hydra/job_logging=nope`` ended in Hydra's multi-line error and exit status 1."""
    from ddpm.config_check import check_overrides
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Could not find 'hydra/job_logging/nope' .* default disabled none stdout$"):
        check_overrides("sample", ["ckpt=x", "hydra/job_logging=nope"])
    with pytest.raises(ConfigError, match="hydra.job.chdir=maybe .*not a valid bool"):
        check_overrides("train", ["hydra.job.chdir=maybe"])
    with pytest.raises(ConfigError, match="Could not override 'hydra.foo'"):
        check_overrides("evaluate", ["ckpt=x", "hydra.foo=1"])
    with pytest.raises(ConfigError, match=r"cannot parse the command line 'ckpt=x hydra.run.dir=a\]b'"):
        check_overrides("sample", ["ckpt=x", "hydra.run.dir=a]b"])  # the line as typed, not an empty quote
    with pytest.raises(ConfigError, match=r"bad command line hydra.sweeper.params={seed:'1,2'}"):
        check_overrides("train", ["hydra.sweeper.params={seed:'1,2'}"])  # OmegaConf's AttributeError was a traceback
    cfg = check_overrides("sample", ["ckpt=x", "hydra/job_logging=stdout", "hydra.run.dir=elsewhere", "n=3"])
    assert cfg.n == 3 and "hydra" not in cfg  # the run's own config, as before
