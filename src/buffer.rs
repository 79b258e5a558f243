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

/// How buffers of a class are sized from the class capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SizeClass {
    /// One element per node (plus `extra`).
    Node,
    /// Two elements per undirected edge: CSR stores each edge in both directions.
    Edge,
    /// One element per grid cell.
    Cell,
    /// A fixed number of elements.
    Fixed,
}

/// Element type of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
}

impl ElemType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        4
    }
}

macro_rules! buffers {
    ($( $variant:ident => $name:literal, $class:ident, $elem:ident, $extra:literal; )*) => {
        /// The name of every device buffer of the engine.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        pub enum BufferName { $( #[doc = $name] $variant, )* }

        impl BufferName {
            /// Every buffer, in registration order.
            pub const ALL: &'static [BufferName] = &[ $( BufferName::$variant, )* ];

            /// The name kernels and reports use.
            pub const fn as_str(self) -> &'static str {
                match self { $( BufferName::$variant => $name, )* }
            }

            /// The size class.
            pub const fn class(self) -> SizeClass {
                match self { $( BufferName::$variant => SizeClass::$class, )* }
            }

            /// The element type.
            pub const fn elem(self) -> ElemType {
                match self { $( BufferName::$variant => ElemType::$elem, )* }
            }

            /// Elements beyond the class capacity (`row_offsets` has n + 1), or the fixed length.
            pub const fn extra(self) -> usize {
                match self { $( BufferName::$variant => $extra, )* }
            }
        }
    };
}

buffers! {
    PosInX => "pos_in_x", Node, F32, 0;
    PosInY => "pos_in_y", Node, F32, 0;
    PosInZ => "pos_in_z", Node, F32, 0;
    PosOutX => "pos_out_x", Node, F32, 0;
    PosOutY => "pos_out_y", Node, F32, 0;
    PosOutZ => "pos_out_z", Node, F32, 0;
    VelInX => "vel_in_x", Node, F32, 0;
    VelInY => "vel_in_y", Node, F32, 0;
    VelInZ => "vel_in_z", Node, F32, 0;
    VelOutX => "vel_out_x", Node, F32, 0;
    VelOutY => "vel_out_y", Node, F32, 0;
    VelOutZ => "vel_out_z", Node, F32, 0;
    PosSpareX => "pos_spare_x", Node, F32, 0;
    PosSpareY => "pos_spare_y", Node, F32, 0;
    PosSpareZ => "pos_spare_z", Node, F32, 0;
    VelSpareX => "vel_spare_x", Node, F32, 0;
    VelSpareY => "vel_spare_y", Node, F32, 0;
    VelSpareZ => "vel_spare_z", Node, F32, 0;
    Mass => "mass", Node, F32, 0;
    ForceX => "force_x", Node, F32, 0;
    ForceY => "force_y", Node, F32, 0;
    ForceZ => "force_z", Node, F32, 0;
    AnchorX => "anchor_x", Node, F32, 0;
    AnchorY => "anchor_y", Node, F32, 0;
    AnchorZ => "anchor_z", Node, F32, 0;
    AnchorK => "anchor_k", Node, F32, 0;
    CellKeys => "cell_keys", Node, U32, 0;
    NodeOrder => "node_order", Node, U32, 0;
    SortedKeys => "sorted_keys", Node, U32, 0;
    SortedNodes => "sorted_nodes", Node, U32, 0;
    SortedPosX => "sorted_pos_x", Node, F32, 0;
    SortedPosY => "sorted_pos_y", Node, F32, 0;
    SortedPosZ => "sorted_pos_z", Node, F32, 0;
    SsspDist => "sssp_dist", Node, F32, 0;
    SsspSpare => "sssp_spare", Node, F32, 0;
    SsspFrontier => "sssp_frontier", Node, U32, 0;
    SsspFlags => "sssp_flags", Node, U32, 0;
    RowOffsets => "row_offsets", Node, U32, 1;
    ColIndices => "col_indices", Edge, U32, 0;
    Weights => "weights", Edge, F32, 0;
    EdgeTarget => "edge_target", Edge, F32, 0;
    CellStart => "cell_start", Cell, U32, 0;
    CellEnd => "cell_end", Cell, U32, 0;
    CellCounts => "cell_counts", Cell, U32, 0;
    Bounds => "bounds", Fixed, F32, 6;
    FrontierLen => "frontier_len", Fixed, U32, 1;
    FrontierSpare => "frontier_spare", Fixed, U32, 1;
    Grid => "grid", Fixed, U32, 8;
}

impl BufferName {
    /// Whether the buffer holds state from one operation to the next (positions, velocities, node
    /// attributes, the CSR, SSSP distances), which a resize must carry over. Every other buffer is
    /// scratch that the step or SSSP rewrites before reading, so a resize does not copy it (and
    /// never reads memory that was never written: compute-sanitizer's initcheck stays clean).
    pub const fn carried(self) -> bool {
        use BufferName::*;
        matches!(
            self,
            PosInX
                | PosInY
                | PosInZ
                | VelInX
                | VelInY
                | VelInZ
                | Mass
                | AnchorX
                | AnchorY
                | AnchorZ
                | AnchorK
                | SsspDist
                | RowOffsets
                | ColIndices
                | Weights
                | EdgeTarget
        )
    }
}

impl std::fmt::Display for BufferName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of elements a buffer of `name` holds at class capacity `cap`.
pub fn elements_for(name: BufferName, cap: usize) -> usize {
    match name.class() {
        SizeClass::Node | SizeClass::Cell => cap + name.extra(),
        SizeClass::Edge => 2 * cap + name.extra(),
        SizeClass::Fixed => name.extra(),
    }
}

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
