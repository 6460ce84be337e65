"""The config tree logged at the start of training."""

from __future__ import annotations

from neuropbr.utils.config_tree import config_tree


def test_tree_shows_nesting_values_and_chosen_options() -> None:
    config = {
        "data": {"resolution": 64, "augment": {"flips": True}, "sources": {}},
        "encoder": {"channels": [8, 16]},
        "seed": 7,
    }
    assert config_tree(
        config, {"data": "synthetic", "data/augment": "default", "hydra/launcher": "basic"}
    ) == "\n".join(
        [
            "config",
            "├── data (synthetic)",
            "│   ├── resolution: 64",
            "│   ├── augment (default)",
            "│   │   └── flips: True",
            "│   └── sources: {}",
            "├── encoder",
            "│   └── channels: [8, 16]",
            "└── seed: 7",
        ]
    )
