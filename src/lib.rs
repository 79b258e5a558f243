/*!
Forcefield's layout engine: a force-directed 3-D graph layout, structured like the GPU engine behind
the crash report this project was born from, so that the same classes of bugs exist and can be hunted.

# Brief overview

* [`Engine`] holds a graph on a [`Backend`] and runs the step pipeline: bounding box, grid, cell keys,
  key-value sort, cell bounds, force pass, integrate, swap. It also runs SSSP.
* [`SimParams`] are the simulation parameters, validated before use.
* [`BufferRegistry`] names every device buffer and is the one place capacity changes.
* [`CpuBackend`] emulates device memory with guard pages, so an out-of-bounds kernel access is a real
  SIGSEGV; the CUDA backend runs the same kernels from `kernels/`.
* [`KernelLog`] times every launch and flags anomalies.
* [`faults`] holds the planted defects the harness uses to measure itself (`faults` feature).
* [`inject`] fails backend calls on purpose (an allocation, a copy, a launch, the context): every
  engine operation is a transaction that survives them, and [`Engine::recover`] restores the last
  checkpoint after a lost context.

```
use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};
let g = GraphSpec { num_nodes: 2, edges: vec![Edge::new(0, 1)], positions: None };
let mut e = Engine::new(CpuBackend::new(), &g, SimParams::default()).unwrap();
e.step(100).unwrap();
let p = e.positions().unwrap();
let d = ((p[0][0] - p[1][0]).powi(2) + (p[0][1] - p[1][1]).powi(2) + (p[0][2] - p[1][2]).powi(2)).sqrt();
assert!(d > 0.5 && d < 20.0, "an edge settles near its rest length, got {d}");
```
*/
#![warn(missing_docs)]

pub mod backend;
pub mod buffer;
pub mod buffer_name;
pub mod engine;
pub mod error;
pub mod faults;
pub mod graph;
pub mod hash;
pub mod inject;
pub mod params;
pub mod perf_log;
pub mod sanitize;

pub use backend::cpu::CpuBackend;
pub use backend::cuda::CudaBackend;
pub use backend::{Backend, GridSpec};
pub use buffer::{BufferName, BufferRegistry, GrowthPolicy, SizeClass};
pub use engine::{
    Checkpoint, CheckpointCadence, ConstraintInspection, CsrInspection, Engine, EngineConfig,
    GridInspection,
};
pub use error::{BackendError, EngineError, GraphError, ParamError};
pub use faults::{Fault, FaultBackends, FaultKind, FaultSet};
pub use graph::{Edge, GraphSpec};
pub use inject::{EnvFault, InjectionCounts};
pub use params::SimParams;
pub use perf_log::{KernelLog, KernelRecord};
pub use sanitize::MemoryViolation;
