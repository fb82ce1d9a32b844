"""Whether a run had converged: a short run's differences are differences in the speed of learning.

Torch-free, so that the sweep's report and the analysis' figures judge a curve the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

RISING_POINTS = 0.5
"""Validation top-1 (in points) gained over a run's last quarter that marks it as still learning."""

NOT_CONVERGED = "not converged, so differences reflect the speed of learning at this budget"


def still_rising(curve: Sequence[tuple[float, float]]) -> bool:
    """Whether validation top-1 rose by `RISING_POINTS` or more from three quarters of the run to its end;
    `curve` is (step, top-1 as a fraction) per evaluation, in step order."""
    if len(curve) < 2:
        return False
    last_step, last = curve[-1]
    earlier = [top1 for step, top1 in curve if step <= 0.75 * last_step] or [curve[0][1]]
    return (last - earlier[-1]) * 100 >= RISING_POINTS
