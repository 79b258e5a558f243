/*!
The buffer registry: every device buffer of the engine, with its name, element type, size class,
live length and capacity, and the one place where buffers are resized.

A buffer belongs to a [`SizeClass`]: node-sized, edge-sized (CSR entries: two per undirected edge),
cell-sized or fixed. [`BufferRegistry::resize_class`] reallocates *every* buffer of a class together,
copying the live prefix, so that no buffer of a class can lag behind the others — the class of bug
behind the original engine's crashes. Capacity is never observable: kernels run over live counts only.
*/

use std::collections::BTreeMap;

use crate::backend::{Backend, DeviceAlloc, DeviceSpan};
use crate::error::{BackendError, EngineError};

pub use crate::buffer_name::{elements_for, BufferName, ElemType, SizeClass};

/// One registered buffer.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct BufferInfo {
    /// The buffer.
    pub name: BufferName,
    /// Device address.
    #[serde(skip)]
    pub alloc: DeviceAlloc,
    /// Live elements.
    pub len: usize,
    /// Allocated elements.
    pub capacity: usize,
}

/// How class capacity grows when a count exceeds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowthPolicy {
    /// New capacity = max(needed, ceil(old * factor)).
    pub factor: f64,
}

impl Default for GrowthPolicy {
    fn default() -> Self {
        GrowthPolicy { factor: 1.5 }
    }
}

impl GrowthPolicy {
    /// The capacity to grow to from `old` when `needed` elements must fit.
    pub fn grow(&self, old: usize, needed: usize) -> usize {
        let scaled = (old as f64 * self.factor).ceil() as usize;
        needed.max(scaled)
    }
}

/// Every device buffer of one engine.
#[derive(Debug, Default)]
pub struct BufferRegistry {
    buffers: BTreeMap<BufferName, BufferInfo>,
}

impl BufferRegistry {
    /// The buffer `name`.
    pub fn get(&self, name: BufferName) -> Result<&BufferInfo, EngineError> {
        self.buffers
            .get(&name)
            .ok_or(EngineError::MissingBuffer(name))
    }

    /// The device span (address, capacity, live length, name) kernels receive for `name`.
    pub fn span(&self, name: BufferName) -> Result<DeviceSpan, EngineError> {
        let b = self.get(name)?;
        Ok(DeviceSpan {
            addr: b.alloc.addr,
            capacity: b.capacity,
            len: b.len,
            buffer: name,
        })
    }

    /// Every buffer, for reports and checked modes.
    pub fn iter(&self) -> impl Iterator<Item = &BufferInfo> {
        self.buffers.values()
    }

    /// Allocates every buffer of `class` at capacity `cap` (class capacity, not elements), copying the
    /// live elements of each old buffer that is [`BufferName::carried`], then frees the old ones. On any failure the
    /// registry is exactly as before: new buffers already allocated are freed, old ones kept.
    pub fn resize_class(
        &mut self,
        backend: &mut dyn Backend,
        class: SizeClass,
        cap: usize,
    ) -> Result<(), BackendError> {
        self.resize_names(backend, class, cap, |_| true, false)
    }

    /// [`Self::resize_class`] restricted to the buffers `select` selects, optionally without freeing
    /// the old allocations (both only for planted faults: a resize that forgets buffers, a resize
    /// that leaks).
    pub fn resize_names(
        &mut self,
        backend: &mut dyn Backend,
        class: SizeClass,
        cap: usize,
        select: impl Fn(BufferName) -> bool,
        leak_old: bool,
    ) -> Result<(), BackendError> {
        let names: Vec<BufferName> = BufferName::ALL
            .iter()
            .copied()
            .filter(|n| n.class() == class && select(*n))
            .collect();
        let mut fresh: Vec<BufferInfo> = Vec::with_capacity(names.len());
        for &name in &names {
            let elems = elements_for(name, cap);
            match backend.alloc(name, elems * name.elem().size()) {
                Ok(alloc) => fresh.push(BufferInfo {
                    name,
                    alloc,
                    len: 0,
                    capacity: elems,
                }),
                Err(e) => {
                    for f in fresh {
                        backend.free(f.alloc);
                    }
                    return Err(e);
                }
            }
        }
        // Copy the live prefix of every old buffer before freeing any of them, so that a failed copy
        // can still roll back.
        for f in fresh.iter_mut() {
            if let Some(old) = self.buffers.get(&f.name) {
                let n = old.len.min(f.capacity);
                if n > 0 && f.name.carried() {
                    if let Err(e) = backend.copy(f.alloc.addr, old.alloc.addr, n * 4) {
                        for f in fresh {
                            backend.free(f.alloc);
                        }
                        return Err(e);
                    }
                }
                f.len = n;
            }
        }
        for f in fresh {
            if let Some(old) = self.buffers.insert(f.name, f) {
                // `leak_old` is the planted `leak-on-resize`: the old allocation is dropped unfreed.
                if !leak_old {
                    backend.free(old.alloc);
                }
            }
        }
        Ok(())
    }

    /// Sets the live length of every buffer of `class` to `live` class units.
    pub fn set_live(&mut self, class: SizeClass, live: usize) {
        for b in self.buffers.values_mut() {
            if b.name.class() == class {
                b.len = elements_for(b.name, live).min(b.capacity);
            }
        }
    }

    /// Exchanges the allocations of two buffers (the double-buffer swap at the end of a step).
    pub fn swap(&mut self, a: BufferName, b: BufferName) {
        if let (Some(x), Some(y)) = (self.buffers.get(&a).copied(), self.buffers.get(&b).copied()) {
            if let Some(e) = self.buffers.get_mut(&a) {
                e.alloc = y.alloc;
                e.capacity = y.capacity;
                e.len = y.len;
            }
            if let Some(e) = self.buffers.get_mut(&b) {
                e.alloc = x.alloc;
                e.capacity = x.capacity;
                e.len = x.len;
            }
        }
    }

    /// Frees every buffer.
    pub fn free_all(&mut self, backend: &mut dyn Backend) {
        for (_, b) in std::mem::take(&mut self.buffers) {
            backend.free(b.alloc);
        }
    }

    /// Forgets every buffer without freeing (after a lost context, the memory went with it).
    pub fn forget_all(&mut self) {
        self.buffers.clear();
    }

    /// Total bytes allocated through this registry.
    pub fn bytes(&self) -> usize {
        self.buffers.values().map(|b| b.alloc.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_one_and_a_half() {
        let g = GrowthPolicy::default();
        assert_eq!(g.grow(10, 11), 15);
        assert_eq!(g.grow(10, 40), 40);
        assert_eq!(g.grow(0, 1), 1);
    }

    #[test]
    fn edge_buffers_hold_both_directions() {
        assert_eq!(elements_for(BufferName::ColIndices, 5), 10);
        assert_eq!(elements_for(BufferName::RowOffsets, 5), 6);
        assert_eq!(elements_for(BufferName::Bounds, 1000), 6);
    }
}
