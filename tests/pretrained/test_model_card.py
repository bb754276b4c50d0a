"""The embedded backbone's model card is what `scripts/ship_tiny_moirai.py` writes from the committed
train logs and result files, hand-written sections included: regenerating it changes nothing, so a
shipped checkpoint can never silently drop a section of its card."""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "backbones" / "moirai" / "tiny_moirai"


def _ship():
    spec = importlib.util.spec_from_file_location("ship_tiny_moirai", REPO / "scripts" / "ship_tiny_moirai.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_card_reproduces_the_committed_one():
    from safetensors.torch import load_file

    ship = _ship()
    readme = (TARGET / "README.md").read_text()
    logs = sorted((TARGET.parent / "tiny_moirai_train_logs").glob("stage*.json"))
    stages = [json.loads(p.read_text()) for p in logs]
    n_params = sum(t.numel() for t in load_file(TARGET / "model.safetensors").values())
    size = sum((TARGET / n).stat().st_size for n in ("config.json", "model.safetensors"))
    assert ship.card(stages, size, n_params, ship.kept_sections(readme)) == readme


def test_hand_written_sections_are_kept_verbatim_and_in_order():
    ship = _ship()
    readme = "# t\n\n## A\nx\n## Stage 5's data mix (soon)\nkeep 1\n\nkeep 2\n## B\ny\n## Regenerate the pretraining data\nz\n"
    assert ship.kept_sections(readme) == [
        "## Stage 5's data mix (soon)\nkeep 1\n\nkeep 2\n",
        "## Regenerate the pretraining data\nz\n",
    ]
