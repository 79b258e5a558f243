/*!
Typed errors of the engine.

Every fallible operation of the engine returns [`EngineError`]. Errors that come from a backend carry a
[`BackendError`] which says which operation failed and whether the failure is *sticky*: a sticky error
means the device context is lost and no further work can succeed until the engine is recovered.
*/

use crate::buffer_name::BufferName;
use crate::sanitize::{MemoryViolation, Site};

/// What the backend was doing when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendOp {
    /// Creating the device context, loading modules.
    Init,
    /// Allocating a device buffer.
    Alloc,
    /// Copying host memory to the device.
    Upload,
    /// Copying device memory to the host.
    Download,
    /// Copying or filling device memory on the device.
    DeviceCopy,
    /// Launching a kernel.
    Launch,
    /// Waiting for the device.
    Synchronize,
}

impl std::fmt::Display for BackendOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            BackendOp::Init => "init",
            BackendOp::Alloc => "alloc",
            BackendOp::Upload => "upload",
            BackendOp::Download => "download",
            BackendOp::DeviceCopy => "device copy",
            BackendOp::Launch => "launch",
            BackendOp::Synchronize => "synchronize",
        };
        f.write_str(s)
    }
}

/// A failure reported by a backend.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{op} failed{}: {message}{}", .kernel.map(|k| format!(" in kernel `{k}`")).unwrap_or_default(), if *.sticky { " (sticky: device context lost)" } else { "" })]
pub struct BackendError {
    /// The operation that failed.
    pub op: BackendOp,
    /// The kernel being launched, for launch failures.
    pub kernel: Option<&'static str>,
    /// The backend's own description (a CUDA error name, an errno).
    pub message: String,
    /// Whether the device context is lost: every later call would fail the same way.
    pub sticky: bool,
    /// The invalid memory access a checked mode stopped the kernel at (never sticky).
    pub violation: Option<Box<MemoryViolation>>,
}

impl BackendError {
    /// A non-sticky failure of `op`.
    pub fn new(op: BackendOp, message: impl Into<String>) -> Self {
        BackendError {
            op,
            kernel: None,
            message: message.into(),
            sticky: false,
            violation: None,
        }
    }

    /// The non-sticky failure of `op` that a checked mode reports for an invalid access.
    pub fn from_violation(op: BackendOp, violation: MemoryViolation) -> Self {
        let kernel = match violation.site {
            Site::Kernel(k) => Some(k),
            Site::HostOp(_) => None,
        };
        BackendError {
            op,
            kernel,
            message: violation.to_string(),
            sticky: false,
            violation: Some(Box::new(violation)),
        }
    }
}

/// An invalid simulation parameter.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid parameter `{name}`: {reason}")]
pub struct ParamError {
    /// The field of [`crate::SimParams`] at fault.
    pub name: &'static str,
    /// Why it is rejected, with the value.
    pub reason: String,
}

/// An invalid graph or graph mutation.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// An edge or operation names a node that does not exist.
    #[error("node id {id} out of range (the graph has {num_nodes} nodes)")]
    NodeOutOfRange {
        /// The offending id.
        id: u64,
        /// The live node count.
        num_nodes: u32,
    },
    /// An edge weight that is NaN, infinite or negative.
    #[error("edge {u}-{v} has invalid weight {weight} (weights must be finite and >= 0)")]
    BadWeight {
        /// First endpoint.
        u: u32,
        /// Second endpoint.
        v: u32,
        /// The weight.
        weight: f32,
    },
    /// A position that is NaN or infinite.
    #[error("node {node} has a non-finite position")]
    BadPosition {
        /// The node.
        node: u32,
    },
    /// A mass that is not finite and positive.
    #[error("node {node} has invalid mass {mass} (masses must be finite and > 0)")]
    BadMass {
        /// The node.
        node: u32,
        /// The mass.
        mass: f32,
    },
    /// Positions given for a different number of nodes.
    #[error("{given} positions given for {expected} nodes")]
    PositionCount {
        /// How many positions were given.
        given: usize,
        /// How many nodes there are.
        expected: usize,
    },
    /// A count above the engine's limits.
    #[error("{what} {count} exceeds the limit of {limit}")]
    TooLarge {
        /// What is counted.
        what: &'static str,
        /// The requested count.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// A distance constraint between two nodes that share no edge.
    #[error("no edge between {u} and {v} to constrain")]
    NoSuchEdge {
        /// First endpoint.
        u: u32,
        /// Second endpoint.
        v: u32,
    },
}

/// Any error of the engine.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Invalid parameters; nothing was changed.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// Invalid graph input or mutation; nothing was changed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The backend failed; the engine is as it was before the operation unless the error is sticky.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An earlier sticky error lost the device context; call `recover()`.
    #[error("device context lost earlier ({0}); call recover() before further work")]
    ContextLost(BackendError),
    /// The device refuses a new context in this process after a lost one (CUDA's rule for sticky
    /// errors): continue in a new process, from [`crate::Engine::checkpoint`].
    #[error("the device refuses a new context in this process ({0}); continue in a new process from the engine's checkpoint")]
    ProcessPoisoned(BackendError),
    /// `recover()` was called without a checkpoint to restore.
    #[error("nothing to recover from: no checkpoint has been taken")]
    NoCheckpoint,
    /// A buffer the engine needs is missing from the registry (an engine bug).
    #[error("buffer `{0}` is not registered")]
    MissingBuffer(BufferName),
}

impl EngineError {
    /// Whether this error lost the device context.
    pub fn is_sticky(&self) -> bool {
        matches!(
            self,
            EngineError::ContextLost(_) | EngineError::ProcessPoisoned(_)
        ) || matches!(self, EngineError::Backend(e) if e.sticky)
    }

    /// The invalid memory access a checked mode reported, if that is what this error is.
    pub fn violation(&self) -> Option<&MemoryViolation> {
        match self {
            EngineError::Backend(e) => e.violation.as_deref(),
            _ => None,
        }
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
