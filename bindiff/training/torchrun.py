"""torchrun without its own traceback: the launcher that ``bindiff train --nproc N`` starts.

``python -m torch.distributed.run`` prints a traceback and an error summary of its own when a
worker fails or the launcher is signalled. A worker has already said what went wrong on its own
stderr (one ``error:`` line for bad input, its traceback for a bug), so this entry point runs the
same launcher and turns those two endings into the exit code alone: the failed worker's code (128
+ the signal's number for a worker killed by one), or 128 + the signal the launcher received.
Any other failure of the launcher keeps its traceback.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # the agent logs each failed worker at ERROR level, and a stop ("Received 15 death signal") as a
    # warning; the worker's own output, or the launcher's line, already says it. Each of torch's
    # elastic loggers sets a level of its own, which a parent's level does not override
    for name in [name for name in logging.root.manager.loggerDict if name.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        _, failure = err.get_first_failure()  # the worker that failed first
        code = failure.exitcode
        return code if code > 0 else 128 - code  # a worker killed by signal N reports -N
    except SignalException as err:
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
