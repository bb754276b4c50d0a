"""The experiment runner: Hydra app (`msft-train`), Lightning module, finetuning methods, result tables.

Not imported by ``import msft``; it needs the ``[full]`` extras (hydra, lightning, peft, pandas).
"""
