//! Small hand-made cases that more than one test suite runs: the library's unit tests and the
//! integration tests build them from here, so that "the same case" in two suites is one
//! definition.

use forcefield::{Edge, EnvFault, Fault};

use super::{Case, CaseGraph, Op, FORMAT};

/// A path of `n` nodes (edges `i - 1 -- i`), at seeded positions, with no ops.
pub fn path_case(n: u64) -> Case {
    let edges = (1..n as u32).map(|i| Edge::new(i - 1, i)).collect();
    Case::new(CaseGraph {
        num_nodes: n,
        edges,
        positions: None,
    })
}

/// A path of 8 nodes (and one more edge), grown, shrunk, reserved and stepped, with planted
/// `faults` and the injected faults of `inject` armed before the first four resizing or editing
/// ops (an `inject` op before `add_nodes`, `shrink_to_fit`, `reserve` and the last `step`, in that
/// order, as many as `inject` has). Every op runs on any engine that passes the case format's
/// checks, so a clean engine passes it whatever is injected.
pub fn resizing_case(faults: &[Fault], inject: &[EnvFault]) -> Case {
    let armed = |i: usize| inject.get(i).map(|&fault| Op::Inject { fault });
    let edge = |u, v, w| Edge { u, v, w };
    let mut ops = vec![Op::Step { count: 3 }];
    ops.extend(armed(0));
    ops.extend([
        Op::AddNodes {
            count: 12,
            positions: None,
        },
        Op::Step { count: 2 },
    ]);
    ops.extend(armed(1));
    ops.push(Op::ShrinkToFit);
    ops.extend(armed(2));
    ops.extend([
        Op::Reserve {
            nodes: 40,
            edges: 20,
        },
        Op::AddEdges {
            edges: vec![edge(3, 15, 1.0)],
        },
    ]);
    ops.extend(armed(3));
    ops.extend([Op::Step { count: 2 }, Op::Sssp { source: 0 }]);
    Case {
        format: FORMAT.to_string(),
        seed: 0,
        backend: Default::default(),
        faults: faults.to_vec(),
        params: None,
        engine: None,
        graph: CaseGraph {
            num_nodes: 8,
            edges: vec![edge(0, 1, 1.0), edge(1, 2, 1.0), edge(5, 6, 2.0)],
            positions: None,
        },
        ops,
        expect: None,
        provenance: None,
    }
}
