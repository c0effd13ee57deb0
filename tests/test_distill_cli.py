"""`fusion-gui distill`'s new options override the YAML's training values, validated like them."""

from __future__ import annotations

import argparse

import pytest

from fusion_gui.cli.distill import add_parser, with_overrides
from fusion_gui.engine.distill import config_from_dict
from fusion_gui.engine.errors import InputError

BASE = config_from_dict({"teacher": "t", "student": "s", "data": "d.txt", "losses": {"forward_kl": 1.0},
                         "training": {"max_steps": 5, "lora_rank": 2}})


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["distill", "c.yml", "out", *argv])


def test_options_replace_the_configs_values():
    config = with_overrides(BASE, _args("--lora-rank", "8", "--lora-alpha", "32", "--loss-chunk", "0"))
    assert (config.training.lora_rank, config.training.lora_alpha, config.training.loss_chunk) == (8, 32.0, 0)
    assert config.training.max_steps == 5 and config.losses == BASE.losses
    assert with_overrides(BASE, _args()) is BASE


def test_bad_option_is_refused_in_one_sentence():
    with pytest.raises(InputError, match="training.loss_chunk"):
        with_overrides(BASE, _args("--loss-chunk", "-1"))
