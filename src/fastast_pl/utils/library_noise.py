"""Messages of the libraries under fastast_pl that ask nothing of its users, silenced once.

Each filter matches one message by its text, in Python's own ``warnings`` and ``logging``
machinery (nothing is patched); every other message, and every one that asks the user
to act (``log_every_n_steps``, few workers, ...), is left as it is. ``FastASTCLI`` installs
them when it starts; a library user's own process is left alone.
"""

from __future__ import annotations

import logging
import warnings

#: (message regex, category, why it is not the user's business)
WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"Starting from v1\.9\.0, `tensorboardX` has been removed", UserWarning,
     "Lightning's default logger notice: our configs name their loggers (CSV, W&B)"),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
     "torch deprecating an API that Lightning 2.6's _pytree still calls"),
)  # fmt: skip
#: Lightning's info-level advertisements (logged through its rank-zero loggers).
ADVERTISEMENTS = ("💡 Tip:",)
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
#: ModelCheckpoint on restoring a checkpoint from another run directory: only best-k
#: bookkeeping is lost, which validate/test/predict never use (they save nothing).
DIRPATH_CHANGED = r"The dirpath has changed from"


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERTISEMENTS)


def silence_library_noise() -> None:
    """Install the filters (idempotent: a second call adds nothing)."""
    for message, category, _why in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())


def silence_checkpoint_dirpath_notice() -> None:
    """For evaluation subcommands only: in ``fit`` the lost best-k bookkeeping matters."""
    warnings.filterwarnings("ignore", message=DIRPATH_CHANGED)
