import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_configure(config):
    # Every test model is tiny: one intra-op thread is faster than two, and immune to a busy machine
    # where oversubscribed OpenMP threads spin (seen: 10-50x slower steps).
    import torch

    torch.set_num_threads(1)
