"""Data package: the tiny MOIRAI checkpoint (config.json, model.safetensors) and its model card (README.md)."""
