#!/usr/bin/env python3
"""A deliberately broken variant of target.py: one capacity bug, for the harness to find.

The bug: `_grow` reallocates positions and masses but not velocities, so the velocity array keeps
the capacity of the first allocation while the graph grows past it (the kind of bug that crashed
the GPU server this project started from: one buffer of a size class not resized with the others).
Everything else is target.py's, imported rather than copied.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import target  # noqa: E402


class BrokenLayout(target.Layout):
    def _grow(self, needed):
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity, 4)
        n = self.n
        self.pos = np.concatenate([self.pos[:n], np.zeros((capacity - n, 3), dtype=np.float32)])
        # Planted: the velocities are not grown with the other node buffers.
        self.mass = np.concatenate([self.mass[:n], np.ones(capacity - n, dtype=np.float32)])
        self.capacity = capacity


if __name__ == "__main__":
    target.main(BrokenLayout, "numpy-layout-broken")
