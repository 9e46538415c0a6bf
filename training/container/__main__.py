"""``python -m training.container MODE [ARGS]``: the container image's entry point.

One line per mode in `MODES` (``module:function``, the function takes the remaining argv
and returns the exit code); each mode's module is imported only when it runs.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

MODES: dict[str, str] = {
    "sagemaker": "training.container.sagemaker:main",
    "train": "training.container.sagemaker:main",  # what SageMaker passes to a bring-your-own image
    "batch-child": "training.container.batch:main",  # one child of an AWS Batch array job
    "batch-fetch": "training.container.batch_fetch:main",  # a child fetching its own coins' candles
    "dql": "training.container.dql:main",  # seed 004's full-workflow as a Batch job (Ref:: parameters)
}
"""Mode -> ``module:function``."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in MODES:
        got = repr(args[0]) if args else "nothing"
        print(f"usage: python -m training.container {{{','.join(MODES)}}} ... (got {got})", file=sys.stderr)
        return 2
    module, _, name = MODES[args[0]].partition(":")
    run: Callable[[list[str]], int] = getattr(importlib.import_module(module), name)
    return run(args[1:])


if __name__ == "__main__":
    sys.exit(main())
