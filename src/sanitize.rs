/*!
Sanitizer findings of the engine's own checked modes: what `compute-sanitizer` would say about a
kernel's memory access, reported as a value instead of a crash.

A [`MemoryViolation`] names the kernel (or the copy operation), the buffer, the element index, the
buffer's live length and capacity, and whether the access was a read or a write. Backends that run
in a checked mode (the CPU backend's `with_checked`) stop the kernel at the first violation and
return it inside a non-sticky [`crate::BackendError`] (its `violation` field), so that the caller
can report it as a sanitizer finding with everything needed to find the bug, and carry on.

This module only describes findings; detecting them is the backends' business.
*/

use crate::buffer_name::BufferName;

/// What was wrong with an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    /// The index is at or past the buffer's capacity (memcheck's "Invalid __global__ access").
    OutOfBounds,
    /// The element was read before anything wrote it since its allocation (initcheck's
    /// "Uninitialized __global__ memory read").
    Uninitialized,
    /// The buffer's address is not inside any live allocation: it was freed, or never allocated.
    Unallocated,
}

impl ViolationKind {
    /// The kind's name in signatures and reports: `out-of-bounds`, `uninitialized`, `unallocated`.
    pub const fn name(self) -> &'static str {
        match self {
            ViolationKind::OutOfBounds => "out-of-bounds",
            ViolationKind::Uninitialized => "uninitialized",
            ViolationKind::Unallocated => "unallocated",
        }
    }
}

impl std::fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The direction of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
}

impl Access {
    /// `read` or `write`.
    pub const fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who made the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// A kernel, by its name in `kernels/` and the kernel log.
    Kernel(&'static str),
    /// A host-side operation on device memory: `upload`, `download`, `copy` or `fill`.
    HostOp(&'static str),
}

impl Site {
    /// The kernel's or the operation's name (what a signature's site is).
    pub const fn name(self) -> &'static str {
        match self {
            Site::Kernel(k) | Site::HostOp(k) => k,
        }
    }
}

/// One invalid device-memory access, as a sanitizer reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemoryViolation {
    /// What was wrong.
    pub kind: ViolationKind,
    /// The kernel or host operation that made the access.
    pub site: Site,
    /// The buffer the access went to (as the kernel's argument named it).
    pub buffer: BufferName,
    /// The element index accessed (for a host operation: the first element the transfer touches).
    pub index: u64,
    /// The buffer's live length in elements when the kernel was launched (for a host operation,
    /// which knows no live lengths: one past the last element the transfer touches).
    pub len: usize,
    /// The buffer's capacity in elements: the allocation's size, what the index is bounded by.
    pub capacity: usize,
    /// Read or write.
    pub access: Access,
    /// Bytes accessed (an element for a kernel, the whole transfer for a host operation).
    pub size: usize,
    /// Further violations in the same launch that were not recorded (0 when the kernel stopped at
    /// the first).
    pub more: u64,
}

impl MemoryViolation {
    /// The kernel or operation name.
    pub fn kernel(&self) -> &'static str {
        self.site.name()
    }
}

impl std::fmt::Display for MemoryViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words of compute-sanitizer's memcheck and initcheck reports, with the buffer and the
        // index in place of raw addresses.
        let MemoryViolation {
            kind,
            site,
            buffer,
            index,
            len,
            capacity,
            access,
            size,
            more,
        } = self;
        let (what, by) = match site {
            Site::Kernel(k) => ("__global__", format!("in kernel `{k}`")),
            Site::HostOp(op) => ("host", format!("by `{op}`")),
        };
        match kind {
            ViolationKind::OutOfBounds if matches!(site, Site::HostOp(_)) => write!(
                f,
                "Invalid {what} {access} of size {size} bytes: buffer `{buffer}` elements {index}..{len} exceed capacity {capacity} {by}"
            )?,
            ViolationKind::OutOfBounds => write!(
                f,
                "Invalid {what} {access} of size {size} bytes: buffer `{buffer}` index {index} >= capacity {capacity} (live length {len}) {by}"
            )?,
            ViolationKind::Uninitialized => write!(
                f,
                "Uninitialized {what} memory read of size {size} bytes: buffer `{buffer}` index {index} was never written (capacity {capacity}, live length {len}) {by}"
            )?,
            ViolationKind::Unallocated => write!(
                f,
                "Invalid {what} {access} of size {size} bytes: buffer `{buffer}` index {index} is not inside any live allocation (freed or never allocated; capacity {capacity}, live length {len}) {by}"
            )?,
        }
        if *more > 0 {
            write!(f, " (and {more} more in this launch)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oob() -> MemoryViolation {
        MemoryViolation {
            kind: ViolationKind::OutOfBounds,
            site: Site::Kernel("sort_pairs"),
            buffer: BufferName::SortedKeys,
            index: 5,
            len: 4,
            capacity: 4,
            access: Access::Write,
            size: 4,
            more: 0,
        }
    }

    #[test]
    fn out_of_bounds_reads_like_memcheck() {
        assert_eq!(
            oob().to_string(),
            "Invalid __global__ write of size 4 bytes: buffer `sorted_keys` index 5 >= capacity 4 (live length 4) in kernel `sort_pairs`"
        );
        assert_eq!(oob().kernel(), "sort_pairs");
    }

    #[test]
    fn uninitialized_reads_and_host_operations_name_their_site() {
        let v = MemoryViolation {
            kind: ViolationKind::Uninitialized,
            site: Site::Kernel("force_pass"),
            buffer: BufferName::RowOffsets,
            access: Access::Read,
            more: 2,
            ..oob()
        };
        assert_eq!(
            v.to_string(),
            "Uninitialized __global__ memory read of size 4 bytes: buffer `row_offsets` index 5 was never written (capacity 4, live length 4) in kernel `force_pass` (and 2 more in this launch)"
        );
        assert_eq!(v.kind.name(), "uninitialized");
        let host = MemoryViolation {
            site: Site::HostOp("upload"),
            index: 2,
            len: 18,
            size: 64,
            ..oob()
        };
        assert_eq!(
            host.to_string(),
            "Invalid host write of size 64 bytes: buffer `sorted_keys` elements 2..18 exceed capacity 4 by `upload`"
        );
    }
}
