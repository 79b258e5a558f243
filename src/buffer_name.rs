/*!
The names of the engine's device buffers and what each one is: size class, element type, extra
elements, whether a resize carries it. Plain data, importing nothing of the crate, so that backends,
errors and sanitizer reports can name a buffer without depending on the registry
([`crate::buffer`]) that owns the buffers.
*/

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
