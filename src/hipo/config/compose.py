"""Composing configs outside the ``hipo`` command (tests, notebooks): same conf/, same schemas, same resolvers."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from hipo.cli import config_dir
from hipo.config.register import register_configs


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The composed config of ``hipo <command> overrides...`` without running it.

    ``${hydra:...}`` interpolations (e.g. ``output_dir``) resolve as in a single run; the ``hydra`` node itself is
    removed so the result is exactly what the command's function receives.
    """
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
