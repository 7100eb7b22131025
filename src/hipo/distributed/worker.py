"""Entry point of a worker rank started by :class:`hipo.distributed.launcher.WorkerGroup`.

``python -m hipo.distributed.worker``: reads the job's resolved config from ``$HIPO_WORKER_CONFIG`` and runs the
same training job as rank 0 (rank, world size and rendezvous come from the environment). Workers log warnings
only, prefixed with their rank; rank 0 speaks for the job.
"""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import DictConfig, OmegaConf

from hipo.distributed.launcher import CONFIG_ENV


def main() -> None:
    """Runs the training job of this rank; the exit code follows the ``hipo`` command's conventions."""
    rank = os.environ.get("RANK", "?")
    logging.basicConfig(level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    cfg = OmegaConf.create(os.environ[CONFIG_ENV])
    assert isinstance(cfg, DictConfig)
    from hipo.app.train import train
    from hipo.errors import exit_code_of
    from hipo.training.denormals import flush_denormals

    flush_denormals()  # as rank 0's `hipo train` (before this process's first torch op)
    try:
        train(cfg)
    except BaseException as error:  # noqa: BLE001 - every outcome becomes an exit code
        code = exit_code_of(error)
        if code == 1:
            logging.getLogger("hipo").exception("rank %s failed", rank)
        sys.exit(code)


if __name__ == "__main__":
    main()
