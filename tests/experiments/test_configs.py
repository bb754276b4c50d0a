"""Every config file composes, and its group's object instantiates with tiny sizes."""

import inspect

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from msft_runner.methods import IDENTITY, KINDS, build_model
from msft_runner.train import TRAINER_EXTRAS

from .conftest import CONFIG_DIR, TINY, compose

GROUPS = {
    group: sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    for group in ("backbone", "data", "method", "trainer")
}


def test_default_config_is_the_main_job():
    cfg = compose()  # the main job is the default config named experiment=main (scripts/main.sh)
    assert cfg.data.name == "ETTh1" and cfg.data.horizon == 96 and cfg.experiment == "default"
    hydra = compose(["hydra.mode=MULTIRUN"])  # composes with its hydra section too
    assert hydra.method.kind == "msft"


# Offline-buildable backbone configs and the overrides that make them tiny; every other backbone
# config names pretrained weights on the hub, which must fail fast with a clear error here (offline).
OFFLINE = {
    "toy": ["backbone.pretrain_steps=0", "backbone.d_model=16"],
    "toy_tiny": [],
    "tiny_moirai": [],
    "moirai_random": [],
    "moment_random": ["data.horizon=8"],
    "moment_tiny": ["data.horizon=8"],
    "time_dpd_tiny": ["data.context_length=32", "data.horizon=8"],
    "chronos2_tiny": [],
    "moirai2_tiny": [],
}


def _builder_accepts_its_keys(cfg):
    from hydra.utils import get_method

    builder = get_method(cfg.backbone._target_)
    keys = set(cfg.backbone) - {"_target_", "wrap_options"}
    params = inspect.signature(builder).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert takes_kwargs or keys <= set(params), f"{sorted(keys - set(params))} are not arguments of {builder}"


@pytest.mark.parametrize("name", GROUPS["backbone"])
def test_backbone_configs_instantiate(name):
    import msft
    from msft_runner.backbones import build_backbone

    cfg = compose([f"backbone={name}", *OFFLINE.get(name, [])])
    _builder_accepts_its_keys(cfg)
    if name not in OFFLINE:
        with pytest.raises(Exception, match="(?i)local|offline|unreachable|connect"):
            build_backbone(cfg.backbone)
        return
    model, wrap_options = build_backbone(cfg.backbone)
    wrapped = msft.wrap(model, horizon=cfg.data.horizon, **wrap_options, **IDENTITY)
    assert wrapped.spec.name  # registered with msft
    past = torch.randn(2, cfg.data.context_length, 1)
    assert wrapped.predict(past, cfg.data.horizon).shape == (2, cfg.data.horizon, 1)


@pytest.mark.parametrize("name", GROUPS["data"])
def test_data_configs_compose(name):
    overrides = [f"data={name}"] + (["data.path=/some/file.csv"] if name in ("csv", "pf_csv") else [])
    cfg = compose(overrides)
    expected = "file" if name == "csv" else name  # a user CSV's data set is named after its file
    assert cfg.data.name == expected and cfg.data.horizon > 0 and cfg.data.context_length > 0
    assert set(cfg.data.lr) == {"lr", "xscale_lr", "head_lr", "scale_weight_lr"}
    assert cfg.data.protocol == ("pf" if name.startswith("pf_") else "lsf")
    if cfg.data.protocol == "pf" and cfg.data.dataset is not None:  # the dataset's published protocol
        from msft.data import PF_DATASETS

        spec = PF_DATASETS[cfg.data.dataset]
        assert (cfg.data.horizon, cfg.data.windows, cfg.data.seasonality) == (
            spec.horizon,
            spec.windows,
            spec.seasonality,
        )
    assert OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("name", GROUPS["method"])
def test_method_configs_build(name):
    cfg = compose([f"method={name}", *TINY])
    assert cfg.method.kind in KINDS and cfg.method.name == name
    backbone = instantiate(cfg.backbone)
    method = OmegaConf.to_container(cfg.method, resolve=True)
    args = dict(kind=method["kind"], horizon=8, options=method.get("options"), peft=method.get("peft"), total_steps=10)
    if (method.get("options") or {}).get("fusion_objective") == "fused_crps":  # probabilistic backbones only
        with pytest.raises(ValueError, match="fused_crps"):
            build_model(backbone, **args)
        from msft_backbones.moirai.spec import MoiraiSpec

        setup = MoiraiSpec.tiny()
        built = build_model(setup.backbone, **{**args, "horizon": setup.horizon}, wrap_options=setup.options)
        assert built.model.config.sample_fusion == "mixture"
        samples = built.model.predict_samples(torch.randn(2, setup.context_length, 1), setup.horizon, num_samples=4)
        assert samples.shape == (2, 4, setup.horizon, 1) and torch.isfinite(samples).all()
        return
    if (method.get("peft") or {}).get("targets"):  # module names of one family (lora_matched: MOIRAI's)
        with pytest.raises(ValueError, match="peft.targets"):
            build_model(backbone, **args)
        from msft_backbones.moirai.spec import MoiraiSpec

        setup = MoiraiSpec.tiny()
        backbone, args = setup.backbone, {**args, "horizon": setup.horizon, "wrap_options": setup.options}
    built = build_model(backbone, **args)
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert bool(trainable) == (cfg.method.kind != "zero_shot")
    if cfg.method.kind in ("lora", "adalora"):
        assert trainable and all("lora_" in n for n in trainable)
    if cfg.method.kind == "linear_probe":
        assert trainable and all(n.startswith("backbone.head.") for n in trainable)
    if cfg.method.kind == "prompt_tuning":  # the toy backbone's head is its own: only the prompt trains
        assert trainable == {"msft_prompt"}
        assert built.model.msft_prompt.shape == (1, method["options"]["prompt_tokens"], built.model.spec.d_model())
    options = method.get("options") or {}
    past = 64  # equal_tokens: scale s sees the last 64 s / max(scales) steps; a list: its longest entry
    if isinstance(options.get("context_lengths"), list):
        past = max(past, *options["context_lengths"])  # msft_single_scale_long: 2048
    out = built.model.predict(torch.randn(2, past, 1), 8)  # 64: msft_authors' scale 8 x the toy's patch 8
    assert out.shape == (2, 8, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", GROUPS["trainer"])
def test_trainer_configs_are_trainer_arguments(name):
    cfg = compose([f"trainer={name}"])
    known = set(inspect.signature(L.Trainer).parameters)
    unknown = set(cfg.trainer) - known - set(TRAINER_EXTRAS)
    assert not unknown, f"trainer/{name}.yaml has keys lightning.Trainer does not take: {unknown}"


def test_msft_ablations_change_one_option():
    def settings(name):  # the msft options, the backbone parameters that train, the method's rates
        method = OmegaConf.to_container(compose([f"method={name}"]).method, resolve=True)
        return {**method["options"], "backbone_trainable": method.get("backbone_trainable"), "lr": method.get("lr")}

    base = settings("msft")
    # msft_authors_fusion: the published objective with their prior and scale-weight lr (3 keys);
    # msft_authors adds scales and freeze_ffn; msft_fused_fusion and msft_residual_paths are msft's defaults now;
    # the PF candidates train the backbone and fit the fusion by CRPS, the last also with a faster fusion lr;
    # msft_equal_tokens adds context_lengths, msft_single_scale_long it and scales
    most = {
        "msft_authors": 6,
        "msft_authors_fusion": 3,
        "msft_fused_fusion": 0,
        "msft_residual_paths": 0,  # msft's default since results/recipe/pf_fusion.md
        "msft_full_backbone_crps": 3,  # and sample_fusion="mixture", a key msft's own options leave at its default
        "msft_full_backbone_crps_fast_fusion": 4,
    }
    for name in GROUPS["method"]:
        if name.startswith("msft_"):
            variant = settings(name)
            changed = {k for k in base.keys() | variant.keys() if variant.get(k) != base.get(k)}  # context_lengths
            assert min(1, most.get(name, 2)) <= len(changed) <= most.get(name, 2), (name, changed)


def test_backbone_dataset_presets_apply():
    cfg = compose(["backbone=moirai_1.1_small", "data=ETTm1"])
    assert cfg.data.context_length == 4000 and cfg.backbone.wrap_options.patch_size == 128
    cfg = compose(["backbone=moirai_1.1_small", "data=Traffic"])  # no preset: the data/backbone defaults
    assert cfg.data.context_length == 512 and cfg.backbone.wrap_options.patch_size == 32


@pytest.mark.parametrize("data, width", [("ETTh1", 128), ("ETTm1", 128), ("Weather", 32)])
def test_time_llm_recipe_presets_apply_to_time_dpd(data, width):
    cfg = compose(["backbone=time_dpd", f"data={data}"])
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    assert (backbone["d_model"], backbone["d_keys"], backbone["head_channels"]) == (32, width, width)
    assert cfg.data.batch_size == 24 and cfg.data.lr.lr == 4e-4 and cfg.lr_decay == 0.5
    assert cfg.trainer.patience == 10 and cfg.data.context_length == 512
    assert backbone["description"] == cfg.data.description and data[:3] in backbone["description"]
    from msft_backbones.time_dpd import TimeDPDConfig

    keys = {k: v for k, v in backbone.items() if k not in ("_target_", "family", "wrap_options")}
    TimeDPDConfig(**keys)  # every preset key is a Time-DPD option


def test_time_dpd_prompt_falls_back_without_a_data_description():
    cfg = compose(["backbone=time_dpd_tiny", "data=csv", "data.path=/some/file.csv"])
    assert cfg.backbone.description == "a univariate time series."
    assert compose(["backbone=time_dpd_tiny", "data=ETTm2"]).backbone.description.startswith("ETT (Electricity")
