/*!
The worker's sanitizer log: [`Recorded`] sits between an engine and its backend and keeps the first
[`MemoryViolation`] any backend call reports; the job handler ([`crate::worker::job`]) turns it into
the reply's [`SanitizerFinding`], which the driver ([`crate::client::signature`]) classifies as
`sanitizer:<kind>:<kernel>`.
*/

use std::sync::{Arc, Mutex};

use forcefield::backend::layer::{Layer, Layered};
use forcefield::{BackendError, MemoryViolation};
use serde::{Deserialize, Serialize};

/// A sanitizer finding as a worker reports it: a [`MemoryViolation`] in serializable form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerFinding {
    /// `out-of-bounds`, `uninitialized` or `unallocated`.
    pub kind: String,
    /// The kernel (or host operation: `upload`, `download`, `copy`, `fill`).
    pub kernel: String,
    /// The buffer.
    pub buffer: String,
    /// The element index.
    pub index: u64,
    /// The buffer's live length (for a host operation: the transfer's end element).
    pub len: u64,
    /// The buffer's capacity in elements.
    pub capacity: u64,
    /// `read` or `write`.
    pub access: String,
    /// Bytes accessed.
    pub size: u64,
    /// Violations in the same launch not recorded.
    #[serde(default)]
    pub more: u64,
    /// The finding in compute-sanitizer's words.
    pub message: String,
}

impl From<&MemoryViolation> for SanitizerFinding {
    fn from(v: &MemoryViolation) -> Self {
        SanitizerFinding {
            kind: v.kind.name().to_string(),
            kernel: v.kernel().to_string(),
            buffer: v.buffer.as_str().to_string(),
            index: v.index,
            len: v.len as u64,
            capacity: v.capacity as u64,
            access: v.access.name().to_string(),
            size: v.size as u64,
            more: v.more,
            message: v.to_string(),
        }
    }
}

/// Where a [`Recorded`] backend keeps the first violation; clones share it.
#[derive(Clone, Debug, Default)]
pub struct ViolationLog(Arc<Mutex<Option<MemoryViolation>>>);

impl ViolationLog {
    /// Keeps `violation` unless one is kept already.
    fn note(&self, violation: &MemoryViolation) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(violation.clone());
        }
    }

    /// The kept violation, as a finding; the log is empty again afterwards.
    pub fn take(&self) -> Option<SanitizerFinding> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.take().as_ref().map(SanitizerFinding::from)
    }
}

/// A backend whose failed calls are shown to a [`ViolationLog`], which keeps the first memory
/// violation among them, then passes them on.
///
/// The engine turns a failed call into an error of the operation, and the case executor into a
/// string; recording at the backend keeps the typed violation whatever happens to the error above
/// (a violation only in the capacity-invariance re-run, say, is still a sanitizer finding).
pub type Recorded<B> = Layered<B, ViolationLog>;

impl Layer for ViolationLog {
    fn failed(&mut self, error: &BackendError) {
        if let Some(v) = &error.violation {
            self.note(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forcefield::backend::{Backend, BoundsReduceArgs, DeviceSpan, Launch};
    use forcefield::BufferName;
    use forcefield::CpuBackend;

    #[test]
    fn the_recorder_keeps_the_first_violation_and_passes_errors_on() {
        let log = ViolationLog::default();
        let mut b = Recorded::new(CpuBackend::with_threads(1).with_checked(true), log.clone());
        let pos = b.alloc(BufferName::PosInX, 8).unwrap();
        b.upload(pos.addr, &[0u8; 8]).unwrap();
        assert!(log.take().is_none(), "clean calls record nothing");
        let span = |name| DeviceSpan {
            addr: pos.addr,
            capacity: 2,
            len: 2,
            buffer: name,
        };
        let bounds = b.alloc(BufferName::Bounds, 4).unwrap();
        let args = BoundsReduceArgs {
            pos: [span(BufferName::PosInX); 3],
            bounds: DeviceSpan {
                addr: bounds.addr,
                capacity: 1,
                len: 1,
                buffer: BufferName::Bounds,
            },
            num_nodes: 2,
        };
        let e = b.launch(&Launch::BoundsReduce(args)).unwrap_err();
        assert!(e.violation.is_some(), "the error still carries it");
        let _ = b.launch(&Launch::BoundsReduce(args));
        let f = log.take().expect("recorded");
        assert_eq!(
            (f.kind.as_str(), f.kernel.as_str(), f.buffer.as_str()),
            ("out-of-bounds", "bounds_reduce", "bounds")
        );
        assert_eq!((f.index, f.capacity, f.access.as_str()), (3, 1, "write"));
        assert!(f.message.contains("index 3 >= capacity 1"), "{}", f.message);
        assert!(log.take().is_none(), "taken once");
    }
}
