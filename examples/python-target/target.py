#!/usr/bin/env python3
"""A small NumPy force layout speaking forcefield-target/1 on stdin and stdout.

An engine written the way GPU engines are: structure-of-arrays buffers with a capacity that grows
by doubling (positions, velocities, masses), a live count, and an edge list. Each step: repulsion
between all pairs (softened), springs along edges, gravity to the origin, damped velocity update.

Run it under the conformance check:

    forcefield target check "python3 examples/python-target/target.py"

Protocol: one JSON request per line on stdin, one reply per line on stdout (see
docs/worker-protocol.md); logs go to stderr.
"""

import json
import math
import sys

import numpy as np

NAME = "numpy-layout"
VERSION = "1.0"
PROTOCOL = "forcefield-target/1"
CAPABILITIES = ["params", "capacity", "counts", "checkpoint"]
MAX_NODES = 1 << 16
DEFAULTS = {"repulsion": 1.0, "spring": 0.05, "gravity": 0.01, "damping": 0.8, "dt": 0.05}
# Positions are clamped to this box after each step: an explicit integrator diverges on a stiff
# spring (a weight of 1e6 sent two nodes to infinity in a few steps before the clamp; found by a
# `forcefield run --target` campaign), and a bounded position keeps every force finite.
VIEWPORT = 1.0e4


class Rejected(Exception):
    """Bad input, refused cleanly: the layout is unchanged."""


class Unsupported(Exception):
    """An operation this target does not offer."""


def seeded(ordinal):
    """A seeded position: a pure function of how many nodes were ever added."""
    rng = np.random.default_rng(ordinal)
    return rng.uniform(-10.0, 10.0, 3).astype(np.float32)


class Layout:
    def __init__(self):
        self.n = 0
        self.create({"num_nodes": 0}, None)

    # --- buffers ---------------------------------------------------------------------------
    def _allocate(self, capacity):
        self.capacity = capacity
        self.pos = np.zeros((capacity, 3), dtype=np.float32)
        self.vel = np.zeros((capacity, 3), dtype=np.float32)
        self.mass = np.ones(capacity, dtype=np.float32)

    def _grow(self, needed):
        """Every node buffer grows together, carrying the live prefix."""
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity, 4)
        n = self.n
        self.pos = np.concatenate([self.pos[:n], np.zeros((capacity - n, 3), dtype=np.float32)])
        self.vel = np.concatenate([self.vel[:n], np.zeros((capacity - n, 3), dtype=np.float32)])
        self.mass = np.concatenate([self.mass[:n], np.ones(capacity - n, dtype=np.float32)])
        self.capacity = capacity

    # --- validation --------------------------------------------------------------------------
    def _params(self, params):
        if not isinstance(params, dict):
            raise Rejected("params must be an object")
        merged = dict(DEFAULTS)
        for key, value in params.items():
            if key not in DEFAULTS:
                raise Rejected(f"unknown parameter `{key}` (known: {', '.join(DEFAULTS)})")
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise Rejected(f"`{key}` must be a finite number >= 0")
            merged[key] = float(value)
        return merged

    def _new_positions(self, count, given):
        if not isinstance(count, int) or count < 0 or self.n + count > MAX_NODES:
            raise Rejected(f"cannot hold {count} more nodes (limit {MAX_NODES})")
        if given is not None:
            if len(given) != count:
                raise Rejected(f"{len(given)} positions for {count} nodes")
            p = np.array([[float(c) for c in q] for q in given], dtype=np.float32).reshape(count, 3)
            if not np.all(np.isfinite(p)):
                raise Rejected("a position is not finite")
            self.ever_added += count
            return p
        p = np.array([seeded(self.ever_added + i) for i in range(count)], dtype=np.float32)
        self.ever_added += count
        return p.reshape(count, 3)

    def _check_edges(self, edges, n):
        out = []
        for e in edges:
            u, v, w = int(e["u"]), int(e["v"]), float(e.get("w", 1.0))
            if not (0 <= u < n and 0 <= v < n):
                raise Rejected(f"edge ({u}, {v}) names a node past the last ({n} nodes)")
            if not math.isfinite(w) or w < 0:
                raise Rejected(f"edge ({u}, {v}) has weight {w}")
            out.append((u, v, w))
        return out

    # --- operations --------------------------------------------------------------------------
    def create(self, graph, params):
        before = dict(self.__dict__)
        try:
            self.params = self._params(params or {})
            self.n = 0
            self.ever_added = 0
            self._allocate(0)
            count = graph.get("num_nodes", 0)
            p = self._new_positions(count, graph.get("positions"))
            self.edges = self._check_edges(graph.get("edges", []), count)
            self._grow(count)
            self.pos[:count] = p
            self.n = count
        except Exception:
            self.__dict__ = before  # a refused create leaves the old layout
            raise

    def add_nodes(self, count, positions=None):
        p = self._new_positions(count, positions)
        self._grow(self.n + count)
        self.pos[self.n:self.n + count] = p
        self.vel[self.n:self.n + count] = 0.0
        self.mass[self.n:self.n + count] = 1.0
        self.n += count

    def remove_nodes(self, ids):
        for i in ids:
            if not (0 <= i < self.n):
                raise Rejected(f"node {i} does not exist ({self.n} nodes)")
        gone = set(ids)
        keep = np.array([i for i in range(self.n) if i not in gone], dtype=np.int64)
        renumber = {int(old): new for new, old in enumerate(keep)}
        m = len(keep)
        self.pos[:m] = self.pos[keep]
        self.vel[:m] = self.vel[keep]
        self.mass[:m] = self.mass[keep]
        self.n = m
        self.edges = [(renumber[u], renumber[v], w) for (u, v, w) in self.edges
                      if u in renumber and v in renumber]

    def add_edges(self, edges):
        self.edges.extend(self._check_edges(edges, self.n))

    def remove_edges(self, pairs):
        drop = {(int(a), int(b)) for a, b in pairs} | {(int(b), int(a)) for a, b in pairs}
        self.edges = [e for e in self.edges if (e[0], e[1]) not in drop]

    def step(self, count):
        n, prm = self.n, self.params
        if n == 0:
            return
        for _ in range(count):
            p = self.pos[:n]
            d = p[:, None, :] - p[None, :, :]
            r2 = (d * d).sum(axis=2) + np.float32(0.01)
            force = prm["repulsion"] * (d / r2[:, :, None]).sum(axis=1)
            for (u, v, w) in self.edges:
                pull = np.float32(prm["spring"] * w) * (p[v] - p[u])
                force[u] += pull
                force[v] -= pull
            force -= np.float32(prm["gravity"]) * p
            force /= self.mass[:n, None]
            self.vel[:n] = np.float32(prm["damping"]) * self.vel[:n] + np.float32(prm["dt"]) * force
            self.pos[:n] = np.clip(p + np.float32(prm["dt"]) * self.vel[:n], -VIEWPORT, VIEWPORT)

    def positions(self):
        return self.pos[:self.n]

    def set_params(self, params):
        self.params = self._params(params)

    def reserve(self, nodes, edges):
        if nodes > MAX_NODES:
            raise Rejected(f"cannot reserve {nodes} nodes (limit {MAX_NODES})")
        self._grow(nodes)

    def shrink_to_fit(self):
        n = self.n
        pos, vel, mass = self.pos[:n].copy(), self.vel[:n].copy(), self.mass[:n].copy()
        self._allocate(n)
        self.pos[:], self.vel[:], self.mass[:] = pos, vel, mass

    def counts(self):
        return {"nodes": self.n, "edges": len(self.edges), "node_capacity": self.capacity}

    def checkpoint(self):
        n = self.n
        return {
            "pos": self.pos[:n].view(np.uint32).tolist(),
            "vel": self.vel[:n].view(np.uint32).tolist(),
            "mass": self.mass[:n].view(np.uint32).tolist(),
            "edges": [[u, v, w] for (u, v, w) in self.edges],
            "ever_added": self.ever_added,
            "params": self.params,
        }

    def restore(self, state):
        try:
            pos = np.array(state["pos"], dtype=np.uint32).view(np.float32).reshape(-1, 3)
            vel = np.array(state["vel"], dtype=np.uint32).view(np.float32).reshape(-1, 3)
            mass = np.array(state["mass"], dtype=np.uint32).view(np.float32).reshape(-1)
            edges = [(int(u), int(v), float(w)) for u, v, w in state["edges"]]
            ever_added, params = int(state["ever_added"]), self._params(state["params"])
        except (KeyError, TypeError, ValueError) as e:
            raise Rejected(f"not a checkpoint of this target: {e}")
        n = len(pos)
        self._allocate(n)
        self.pos[:], self.vel[:], self.mass[:] = pos, vel, mass
        self.n, self.edges, self.ever_added, self.params = n, edges, ever_added, params


def wire_float(x):
    """JSON has no NaN or infinity: the protocol writes them as strings."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def arg(request, name):
    """A request's field; a missing one is bad input."""
    if name not in request:
        raise Rejected(f"`{request.get('op')}` needs `{name}`")
    return request[name]


def handle(layout, request, name=NAME):
    op = request.get("op")
    if op == "hello":
        if request.get("protocol") != PROTOCOL:
            raise Rejected(f"this target speaks {PROTOCOL}")
        return {"name": name, "version": VERSION, "protocol": PROTOCOL,
                "capabilities": CAPABILITIES}
    if op == "create":
        return layout.create(arg(request, "graph"), request.get("params"))
    if op == "add_nodes":
        return layout.add_nodes(arg(request, "count"), request.get("positions"))
    if op == "remove_nodes":
        return layout.remove_nodes(arg(request, "ids"))
    if op == "add_edges":
        return layout.add_edges(arg(request, "edges"))
    if op == "remove_edges":
        return layout.remove_edges(arg(request, "pairs"))
    if op == "step":
        return layout.step(arg(request, "count"))
    if op == "positions":
        return [[wire_float(c) for c in p] for p in layout.positions()]
    if op == "set_params":
        return layout.set_params(arg(request, "params"))
    if op == "reserve":
        return layout.reserve(request.get("nodes", 0), request.get("edges", 0))
    if op == "shrink_to_fit":
        return layout.shrink_to_fit()
    if op == "counts":
        return layout.counts()
    if op == "checkpoint":
        return layout.checkpoint()
    if op == "restore":
        return layout.restore(arg(request, "state"))
    if op == "shutdown":
        return None
    raise Unsupported(f"this target does not offer `{op}`")


def main(layout_class=None, name=NAME):
    layout = (layout_class or Layout)()
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = arg(request, "id")
            reply = {"id": request_id, "ok": handle(layout, request, name)}
        except Rejected as e:
            reply = {"id": request_id, "error": {"kind": "rejected", "message": str(e)}}
        except Unsupported as e:
            reply = {"id": request_id, "error": {"kind": "unsupported", "message": str(e)}}
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            if request_id is not None:  # the request was read: the engine failed on it
                print(f"internal error: {e!r}", file=sys.stderr)
                reply = {"id": request_id, "error": {"kind": "internal", "message": repr(e)}}
            else:
                reply = {"id": None, "error": {"kind": "rejected",
                                               "message": f"not a request: {e!r}"}}
        except Exception as e:  # a defect of this engine: say so, keep serving
            print(f"internal error: {e!r}", file=sys.stderr)
            reply = {"id": request_id, "error": {"kind": "internal", "message": repr(e)}}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if request_id is not None and request.get("op") == "shutdown":
            break


if __name__ == "__main__":
    main()
