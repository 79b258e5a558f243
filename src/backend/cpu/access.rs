/*!
The one accessor through which CPU kernels touch device memory.

[`Dev<T>`] is a raw device pointer with the buffer's capacity and name beside it. In the default mode
`get`/`set` are unchecked raw reads and writes, exactly like a GPU kernel's: an out-of-bounds index
runs into a guard page and the process dies with SIGSEGV. Because every kernel access goes through this
type, a checked mode can put bounds checks here without touching kernel code.
*/

use std::marker::PhantomData;

use crate::backend::DeviceSpan;
use crate::buffer::BufferName;

/// A typed device pointer as a CPU kernel sees it.
#[derive(Debug)]
pub struct Dev<T> {
    ptr: *mut T,
    capacity: usize,
    buffer: BufferName,
    _t: PhantomData<T>,
}

impl<T> Clone for Dev<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Dev<T> {}

// SAFETY: `Dev` is a device pointer; kernels partition writes between threads the way GPU threads do.
unsafe impl<T> Send for Dev<T> {}
unsafe impl<T> Sync for Dev<T> {}

impl<T: Copy> Dev<T> {
    /// The accessor for a span.
    pub fn new(span: DeviceSpan) -> Self {
        Dev {
            ptr: span.addr as *mut T,
            capacity: span.capacity,
            buffer: span.buffer,
            _t: PhantomData,
        }
    }

    /// Reads element `i`, unchecked.
    #[inline(always)]
    pub fn get(&self, i: usize) -> T {
        // SAFETY: none, deliberately: like a GPU kernel, an index past the allocation is undefined
        // behaviour that the guard pages turn into SIGSEGV.
        unsafe { self.ptr.add(i).read() }
    }

    /// Writes element `i`, unchecked.
    #[inline(always)]
    pub fn set(&self, i: usize, v: T) {
        // SAFETY: as for `get`.
        unsafe { self.ptr.add(i).write(v) }
    }

    /// The buffer's capacity in elements (what a checked mode bounds against).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The buffer's name.
    pub fn buffer(&self) -> BufferName {
        self.buffer
    }
}
