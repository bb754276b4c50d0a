"""msft-train's Hydra configs (groups: backbone, data, method, preset, trainer; primary: train.yaml).

This folder is installed as the package ``msft_runner.configs`` so that the configs ship with the
runner; this file only makes it a package.
"""
