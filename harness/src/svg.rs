/*!
Drawing a layout: the xy projection of node positions as an SVG picture.

Responsible for turning positions and edges into a self-contained, deterministic SVG document: edges
as thin lines under nodes drawn as dots, uniformly scaled (aspect ratio kept) to fit a square canvas
with a margin, nodes optionally coloured by class (communities, factions, clusters). Written with a
plain formatter and fixed precision, so the same layout always gives the same bytes.

Nodes with a non-finite coordinate are left out, with the edges that touch them: a picture of a
broken layout still opens in a viewer.
*/

use std::fmt::Write as _;

use forcefield::Edge;

/// Colours of node classes, cycled when there are more classes (colour-blind-safe Okabe-Ito set).
pub(crate) const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000",
];

/// Colour of nodes without a class.
pub(crate) const UNCLASSED: &str = "#555555";

/// Size and stroke settings of a picture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SvgStyle {
    /// Width and height of the canvas, in pixels.
    pub size: f32,
    /// Empty border kept on every side, in pixels.
    pub margin: f32,
    /// Radius of a node dot.
    pub node_radius: f32,
    /// Width of an edge line.
    pub edge_width: f32,
}

impl Default for SvgStyle {
    fn default() -> Self {
        SvgStyle {
            size: 800.0,
            margin: 24.0,
            node_radius: 5.0,
            edge_width: 0.8,
        }
    }
}

/// Maps layout coordinates to canvas coordinates.
struct Projection {
    scale: f32,
    offset: [f32; 2],
    size: f32,
}

impl Projection {
    /// A uniform scale that fits the xy bounding box of the finite positions into the canvas less
    /// its margin, centred. A degenerate box (one node, all coincident) is drawn at the centre.
    fn fit(positions: &[[f32; 3]], style: &SvgStyle) -> Self {
        let mut lo = [f32::INFINITY; 2];
        let mut hi = [f32::NEG_INFINITY; 2];
        for p in positions.iter().filter(|p| is_drawable(p)) {
            for axis in 0..2 {
                lo[axis] = lo[axis].min(p[axis]);
                hi[axis] = hi[axis].max(p[axis]);
            }
        }
        let centre = style.size / 2.0;
        if lo[0] > hi[0] {
            // Nothing drawable.
            return Projection {
                scale: 1.0,
                offset: [centre, centre],
                size: style.size,
            };
        }
        let extent = (hi[0] - lo[0]).max(hi[1] - lo[1]);
        let room = (style.size - 2.0 * style.margin).max(1.0);
        let scale = if extent > 0.0 && (room / extent).is_finite() {
            room / extent
        } else {
            1.0
        };
        let mid = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
        Projection {
            scale,
            offset: [centre - mid[0] * scale, centre - mid[1] * scale],
            size: style.size,
        }
    }

    /// Canvas point of a layout position. SVG's y axis points down; flip it so that the picture
    /// shows the layout as a plot would.
    fn apply(&self, p: &[f32; 3]) -> [f32; 2] {
        let y = p[1] * self.scale + self.offset[1];
        [p[0] * self.scale + self.offset[0], self.size - y]
    }
}

fn is_drawable(p: &[f32; 3]) -> bool {
    p[0].is_finite() && p[1].is_finite()
}

/// The colour of a node of class `class`.
pub(crate) fn class_colour(class: Option<usize>) -> &'static str {
    match class {
        Some(c) => PALETTE[c % PALETTE.len()],
        None => UNCLASSED,
    }
}

/// Draws the xy projection of `positions` with `edges` as an SVG document.
///
/// `classes`, when given, holds one optional class per node (shorter slices leave the rest
/// unclassed). Edges naming a node without a position are skipped.
///
/// ```
/// use forcefield::Edge;
/// use forcefield_harness::svg::{render_svg, SvgStyle};
/// let svg = render_svg(&[[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]], &[Edge::new(0, 1)], None, &SvgStyle::default());
/// assert_eq!(svg.matches("<line ").count(), 1);
/// assert_eq!(svg.matches("<circle ").count(), 2);
/// ```
pub fn render_svg(
    positions: &[[f32; 3]],
    edges: &[Edge],
    classes: Option<&[Option<usize>]>,
    style: &SvgStyle,
) -> String {
    let proj = Projection::fit(positions, style);
    let canvas: Vec<Option<[f32; 2]>> = positions
        .iter()
        .map(|p| is_drawable(p).then(|| proj.apply(p)))
        .collect();
    let at = |id: u32| canvas.get(id as usize).copied().flatten();

    let mut out = String::new();
    // Writing to a String cannot fail; the results of write! are ignored for that reason.
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{s}" height="{s}" viewBox="0 0 {s} {s}">"#,
        s = style.size
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r##"<g stroke="#999999" stroke-opacity="0.7" stroke-width="{}">"##,
        style.edge_width
    );
    for e in edges {
        if let (Some(a), Some(b)) = (at(e.u), at(e.v)) {
            let _ = writeln!(
                out,
                r#"<line x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}"/>"#,
                a[0], a[1], b[0], b[1]
            );
        }
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, r##"<g stroke="#ffffff" stroke-width="1">"##);
    for (id, c) in canvas.iter().enumerate() {
        let Some(c) = c else { continue };
        let class = classes.and_then(|cl| cl.get(id).copied().flatten());
        let _ = writeln!(
            out,
            r#"<circle cx="{:.2}" cy="{:.2}" r="{}" fill="{}"><title>{id}</title></circle>"#,
            c[0],
            c[1],
            style.node_radius,
            class_colour(class)
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, "</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(svg: &str, attr: &str) -> Vec<f32> {
        let key = format!(" {attr}=\"");
        svg.match_indices(&key)
            .map(|(i, _)| {
                let rest = &svg[i + key.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn scales_to_the_canvas_with_margin_and_keeps_aspect() {
        let style = SvgStyle::default();
        let pos = [[-10.0, 0.0, 5.0], [10.0, 5.0, -3.0], [0.0, -5.0, 0.0]];
        let svg = render_svg(&pos, &[], None, &style);
        let xs = coords(&svg, "cx");
        let ys = coords(&svg, "cy");
        // x spans the full room: margin to size - margin.
        assert_eq!(xs, vec![24.0, 776.0, 400.0]);
        // y has half the extent of x; same scale, centred, flipped (larger y is higher up).
        assert_eq!(ys, vec![400.0, 212.0, 588.0]);
    }

    #[test]
    fn draws_every_edge_and_node_with_class_colours() {
        let pos = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let edges = [Edge::new(0, 1), Edge::new(1, 2), Edge::new(2, 2)];
        let classes = [Some(0), None, Some(9)];
        let svg = render_svg(&pos, &edges, Some(&classes), &SvgStyle::default());
        assert_eq!(svg.matches("<line ").count(), 3);
        assert_eq!(svg.matches("<circle ").count(), 3);
        assert!(svg.contains(&format!("fill=\"{}\"><title>0<", PALETTE[0])));
        assert!(svg.contains(&format!("fill=\"{UNCLASSED}\"><title>1<")));
        assert!(svg.contains(&format!(
            "fill=\"{}\"><title>2<",
            PALETTE[9 % PALETTE.len()]
        )));
        // Edges come first so that dots are drawn over lines.
        assert!(svg.find("<line ").unwrap() < svg.find("<circle ").unwrap());
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn non_finite_nodes_and_their_edges_are_left_out() {
        let pos = [[0.0, 0.0, 0.0], [f32::NAN, 0.0, 0.0], [1.0, 1.0, f32::NAN]];
        let edges = [Edge::new(0, 1), Edge::new(0, 2), Edge::new(0, 7)];
        let svg = render_svg(&pos, &edges, None, &SvgStyle::default());
        assert_eq!(svg.matches("<circle ").count(), 2);
        assert_eq!(svg.matches("<line ").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn degenerate_layouts_are_drawn_at_the_centre() {
        let style = SvgStyle::default();
        let svg = render_svg(&[[3.0, 3.0, 0.0], [3.0, 3.0, 1.0]], &[], None, &style);
        assert_eq!(coords(&svg, "cx"), vec![400.0, 400.0]);
        assert_eq!(coords(&svg, "cy"), vec![400.0, 400.0]);
        let empty = render_svg(&[], &[], None, &style);
        assert_eq!(empty.matches("<circle ").count(), 0);
    }

    #[test]
    fn output_is_deterministic() {
        let pos = [[0.123_456, 7.5, 0.0], [-3.25, 1.0, 2.0]];
        let a = render_svg(&pos, &[Edge::new(0, 1)], None, &SvgStyle::default());
        let b = render_svg(&pos, &[Edge::new(0, 1)], None, &SvgStyle::default());
        assert_eq!(a, b);
    }
}
