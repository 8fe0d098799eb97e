"""Where ``serve`` relies on LitServe internals, each behind a check of the shape it relies on.

- ``LitServer._shutdown_event``: the event LitServe's own shutdown endpoint sets; SIGTERM sets it
  too, so the server drains instead of dying (LitServe has no public hook for that);
- the text of the RuntimeError ``LitServer.run`` raises when a worker fails to start (the command
  turns it into one line).
"""

from __future__ import annotations

import inspect

from tallrec_pl import fence

FIX = "serve without SIGTERM draining is not offered; report it at tallrec_pl's issue tracker"
WORKERS_FAILED = "workers failed to start"


def shutdown_event(server):
    """LitServe's shutdown event of ``server`` (None until it has started)."""
    fence.require(
        "litserve", hasattr(server, "_shutdown_event"), "LitServer._shutdown_event (its shutdown endpoint's)", FIX
    )
    return server._shutdown_event


def workers_failed(err: BaseException) -> bool:
    """Whether ``err`` is LitServe's error for a model worker that did not start."""
    return isinstance(err, RuntimeError) and WORKERS_FAILED in str(err)


def check_workers_failed_text() -> None:
    """LitServe still says ``workers failed to start`` when a worker fails (else that failure would be
    reported as a traceback, not one line)."""
    import litserve.server

    fence.require(
        "litserve", WORKERS_FAILED in inspect.getsource(litserve.server), "its 'workers failed to start' error", FIX
    )
