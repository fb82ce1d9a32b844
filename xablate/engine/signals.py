"""Stopping a run cleanly: a signal asks the loop to stop after its current step, which then checkpoints."""

from __future__ import annotations

import os
import signal
from types import FrameType


class StopSignal:
    """Asks the loop to stop after the current step, which then checkpoints: on SIGTERM, a first Ctrl-C
    (a second aborts), and a cluster's pre-emption notice (submitit's SIGUSR2, or $SUBMITIT_PREEMPT_SIGNAL)
    when a handler for it is installed. `handoff` later passes that notice on to the handler it displaced
    (submitit's, which requeues the job), once the checkpoint is safe."""

    def __init__(self) -> None:
        self.requested: str | None = None
        signals = [signal.SIGTERM, signal.SIGINT]
        preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
        if preempt is not None and callable(signal.getsignal(preempt)):
            signals.append(preempt)
        self._previous = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def handoff(self) -> None:
        """Deliver a pre-emption notice to the handler it displaced (submitit's: requeue, then exit)."""
        if self.requested is None:
            return
        sig = signal.Signals[self.requested]
        if sig not in (signal.SIGTERM, signal.SIGINT) and callable(self._previous.get(sig)):
            signal.raise_signal(sig)
