"""One worker of ``aivitals serve --workers N``: ``python -m aivitals.cli.serve_worker``.

Started by `aivitals.server.workers.Supervisor` only, with its `WorkerSpec` pickled on stdin (a
pipe from the parent, never user input), it runs the ``serve`` command's own code on the
inherited socket and exits with that command's status.
"""

from __future__ import annotations

import pickle
import sys

import typer


def main() -> int:
    from aivitals.cli.serve import serve  # noqa: PLC0415
    from aivitals.server.workers import WorkerSpec, run_worker  # noqa: PLC0415

    spec = pickle.loads(sys.stdin.buffer.read())  # noqa: S301  # our parent's pipe
    if not isinstance(spec, WorkerSpec):
        print(
            "error: aivitals.cli.serve_worker is started by `aivitals serve --workers`",
            file=sys.stderr,
        )
        return 2
    try:
        run_worker(spec, serve)
    except typer.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
