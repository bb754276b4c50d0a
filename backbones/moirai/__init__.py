"""MOIRAI (uni2ts `MoiraiModule`) as an msft backbone: loading helpers and the registered spec.

    from msft_backbones.moirai import load_moirai
    model = msft.wrap(load_moirai("Salesforce/moirai-1.1-R-small"), scales=[1, 2, 4], patch_size=32)
    samples = model.predict_samples(past_target, horizon=96, num_samples=100)  # (batch, 100, 96, variate)

Importing this package does not import uni2ts; the loaders and the model do, when called.
"""

from msft_backbones.moirai.load import (
    TINY_MOIRAI_DIR,
    HubUnreachableError,
    load_moirai,
    load_tiny_moirai,
    moirai_from_config,
)
from msft_backbones.moirai.packing import PackedBatch, pack_series
from msft_backbones.moirai.spec import MoiraiOutput, MoiraiSpec, default_patch_size

__all__ = [
    "TINY_MOIRAI_DIR",
    "HubUnreachableError",
    "MoiraiOutput",
    "MoiraiSpec",
    "PackedBatch",
    "default_patch_size",
    "load_moirai",
    "load_tiny_moirai",
    "moirai_from_config",
    "pack_series",
]
