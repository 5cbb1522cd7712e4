//! The DAG of a run: one box per stage instance, coloured by its [`State`], in columns by
//! topological layer (left to right, sources first), with an arrow per lineage edge. The
//! caller gives the layers (`histodiff_engine::graph::topological_layers`); this module
//! orders each column to keep edges short (barycentre sweeps), places the boxes and draws
//! them. The SVG comes with each box's pixel area, so a page can link the boxes.

use crate::font::ensure_registered;
use crate::image_map::{Area, ImageMap};
use crate::raster::{encode_png, write_file};
use crate::state::State;
use crate::text::{draw_title, font, shorten, text_width};
use crate::PlotError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One stage instance: its stage name, its matrix coordinates (may be empty) and state.
#[derive(Debug, Clone, PartialEq)]
pub struct DagNode {
    pub title: String,
    pub detail: String,
    pub state: State,
}

/// A layered DAG: `layers` lists every node index exactly once, and every edge
/// `(from, to)` goes from an earlier layer to a later one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dag {
    pub title: String,
    pub nodes: Vec<DagNode>,
    pub edges: Vec<(usize, usize)>,
    pub layers: Vec<Vec<usize>>,
}

const TITLE_PX: f64 = 13.0;
const DETAIL_PX: f64 = 11.0;
const PAD: i32 = 7;
const ROW_GAP: i32 = 10;
const COLUMN_GAP: i32 = 64;
const MARGIN: i32 = 16;
const LEGEND_HEIGHT: i32 = 30;
/// Wider text is shortened (an ellipsis in its middle).
const MAX_TEXT_WIDTH: u32 = 420;

/// Where everything goes: the picture's size, each node's box and its (shortened) text.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    width: u32,
    height: u32,
    boxes: Vec<Area>,
    texts: Vec<(String, String)>,
}

impl Dag {
    /// The DAG as SVG, with one [`Area`] per node (in node order).
    pub fn svg(&self) -> Result<ImageMap, PlotError> {
        ensure_registered();
        let layout = self.layout()?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (layout.width, layout.height))
                .into_drawing_area();
            self.draw(&root, &layout)?;
            root.present().map_err(PlotError::draw)?;
        }
        Ok(ImageMap {
            svg,
            width: layout.width,
            height: layout.height,
            areas: layout.boxes,
        })
    }

    /// The DAG as encoded PNG bytes (its natural size).
    pub fn png(&self) -> Result<Vec<u8>, PlotError> {
        ensure_registered();
        let layout = self.layout()?;
        let (w, h) = (layout.width, layout.height);
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root, &layout)?;
            root.present().map_err(PlotError::draw)?;
        }
        encode_png(rgb, w, h)
    }

    /// Writes `<stem>.png` and `<stem>.svg`.
    pub fn write(&self, stem: &Path) -> Result<(), PlotError> {
        write_file(stem, "png", &self.png()?)?;
        write_file(stem, "svg", self.svg()?.svg.as_bytes())
    }

    /// Refuses layers that miss or repeat a node, and edges that do not point forward.
    fn check(&self) -> Result<Vec<usize>, PlotError> {
        let mut layer_of = vec![usize::MAX; self.nodes.len()];
        for (l, layer) in self.layers.iter().enumerate() {
            for &n in layer {
                match layer_of.get_mut(n) {
                    Some(slot) if *slot == usize::MAX => *slot = l,
                    Some(_) => return Err(bad(format!("node {n} is in two layers"))),
                    None => {
                        return Err(bad(format!(
                            "layer {l} names node {n}, which does not exist"
                        )))
                    }
                }
            }
        }
        if let Some(n) = layer_of.iter().position(|&l| l == usize::MAX) {
            return Err(bad(format!(
                "node {n} (`{}`) is in no layer",
                self.nodes[n].title
            )));
        }
        for &(a, b) in &self.edges {
            if a >= self.nodes.len() || b >= self.nodes.len() || layer_of[a] >= layer_of[b] {
                return Err(bad(format!(
                    "edge {a} → {b} does not point to a later layer"
                )));
            }
        }
        Ok(layer_of)
    }

    /// Orders the columns, sizes the boxes to their text and stacks each column, centred.
    fn layout(&self) -> Result<Layout, PlotError> {
        self.check()?;
        let order = order_layers(&self.layers, &self.edges, self.nodes.len());
        let mut texts = Vec::with_capacity(self.nodes.len());
        let mut widths = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let (title_font, detail_font) = (font(TITLE_PX), font(DETAIL_PX));
            let title = shorten(&title_font, &node.title, MAX_TEXT_WIDTH)?;
            let detail = shorten(&detail_font, &node.detail, MAX_TEXT_WIDTH)?;
            let w = text_width(&title_font, &title)?.max(text_width(&detail_font, &detail)?);
            widths.push(w as i32 + 2 * PAD);
            texts.push((title, detail));
        }
        let heights: Vec<i32> = texts
            .iter()
            .map(|(_, d)| box_height(!d.is_empty()))
            .collect();
        let column_height = |c: &Vec<usize>| -> i32 {
            c.iter().map(|&n| heights[n] + ROW_GAP).sum::<i32>() - ROW_GAP
        };
        let tallest = order.iter().map(column_height).max().unwrap_or(0).max(40);
        let top = MARGIN + LEGEND_HEIGHT + if self.title.is_empty() { 0 } else { 36 };
        let mut boxes = vec![
            Area {
                x: 0,
                y: 0,
                width: 0,
                height: 0
            };
            self.nodes.len()
        ];
        let mut x = MARGIN;
        for column in &order {
            let width = column.iter().map(|&n| widths[n]).max().unwrap_or(0);
            let mut y = top + (tallest - column_height(column)) / 2;
            for &n in column {
                boxes[n] = Area {
                    x,
                    y,
                    width: widths[n],
                    height: heights[n],
                };
                y += heights[n] + ROW_GAP;
            }
            x += width + COLUMN_GAP;
        }
        let width = (x - COLUMN_GAP + MARGIN).max(360) as u32;
        Ok(Layout {
            width,
            height: (top + tallest + MARGIN) as u32,
            boxes,
            texts,
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        layout: &Layout,
    ) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(PlotError::draw)?;
        let body = draw_title(root, &self.title, 18.0)?;
        let (_, offset) = body.get_base_pixel();
        let states: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| self.nodes.iter().any(|n| n.state == *s))
            .collect();
        draw_legend(root, &states, MARGIN, offset + 6)?;
        for &(a, b) in &self.edges {
            draw_edge(root, &layout.boxes[a], &layout.boxes[b])?;
        }
        for (k, node) in self.nodes.iter().enumerate() {
            draw_box(root, &layout.boxes[k], &layout.texts[k], node.state)?;
        }
        Ok(())
    }
}

fn bad(why: String) -> PlotError {
    PlotError::Draw(format!("DAG: {why}"))
}

fn box_height(two_lines: bool) -> i32 {
    let one = (TITLE_PX * 1.25) as i32 + 2 * PAD;
    if two_lines {
        one + (DETAIL_PX * 1.3) as i32
    } else {
        one
    }
}

/// Each layer's nodes in drawing order: two down-and-up sweeps that sort a layer by the
/// mean relative position of its neighbours in the other layers (the barycentre
/// heuristic), which untangles the usual fan-out/gather shapes of a sweep.
fn order_layers(layers: &[Vec<usize>], edges: &[(usize, usize)], n: usize) -> Vec<Vec<usize>> {
    let mut up = vec![Vec::new(); n];
    let mut down = vec![Vec::new(); n];
    for &(a, b) in edges {
        down[a].push(b);
        up[b].push(a);
    }
    let mut order: Vec<Vec<usize>> = layers.to_vec();
    let mut position = vec![0.0f64; n];
    for layer in &order {
        place(layer, &mut position);
    }
    for _ in 0..2 {
        for layer in order.iter_mut().skip(1) {
            sort_by_neighbours(layer, &mut position, &up);
        }
        let last = order.len().saturating_sub(1);
        for layer in order[..last].iter_mut().rev() {
            sort_by_neighbours(layer, &mut position, &down);
        }
    }
    order
}

/// Each node's relative position in its layer, in (0, 1).
fn place(layer: &[usize], position: &mut [f64]) {
    for (i, &node) in layer.iter().enumerate() {
        position[node] = (i as f64 + 0.5) / layer.len() as f64;
    }
}

/// Sorts `layer` by the mean position of each node's `neighbours` (a stable sort: ties
/// keep their order), then records the new positions. A node without neighbours keeps
/// its own position.
fn sort_by_neighbours(layer: &mut [usize], position: &mut [f64], neighbours: &[Vec<usize>]) {
    let key = |node: usize| match neighbours[node].as_slice() {
        [] => position[node],
        near => near.iter().map(|&m| position[m]).sum::<f64>() / near.len() as f64,
    };
    let mut keyed: Vec<(f64, usize)> = layer.iter().map(|&n| (key(n), n)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (slot, (_, n)) in layer.iter_mut().zip(keyed) {
        *slot = n;
    }
    place(layer, position);
}

/// A smooth curve from the right edge of `from` to the left edge of `to`, with an arrowhead.
fn draw_edge<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    from: &Area,
    to: &Area,
) -> Result<(), PlotError> {
    let (x1, y1) = (
        f64::from(from.x + from.width),
        f64::from(from.y + from.height / 2),
    );
    let (x2, y2) = (f64::from(to.x - 6), f64::from(to.y + to.height / 2));
    let dx = (x2 - x1) / 2.0;
    let points: Vec<(i32, i32)> = (0..=24)
        .map(|i| {
            let t = f64::from(i) / 24.0;
            let u = 1.0 - t;
            let x = u.powi(3) * x1
                + 3.0 * u * u * t * (x1 + dx)
                + 3.0 * u * t * t * (x2 - dx)
                + t.powi(3) * x2;
            let y = u.powi(3) * y1 + 3.0 * u * u * t * y1 + 3.0 * u * t * t * y2 + t.powi(3) * y2;
            (x.round() as i32, y.round() as i32)
        })
        .collect();
    let grey = RGBColor(110, 110, 110);
    root.draw(&PathElement::new(points, grey.stroke_width(1)))
        .map_err(PlotError::draw)?;
    let (tx, ty) = (to.x, to.y + to.height / 2);
    root.draw(&Polygon::new(
        vec![(tx, ty), (tx - 7, ty - 4), (tx - 7, ty + 4)],
        grey.filled(),
    ))
    .map_err(PlotError::draw)
}

fn draw_box<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &Area,
    (title, detail): &(String, String),
    state: State,
) -> Result<(), PlotError> {
    let corners = [
        (area.x, area.y),
        (area.x + area.width, area.y + area.height),
    ];
    root.draw(&Rectangle::new(corners, state.fill().filled()))
        .map_err(PlotError::draw)?;
    root.draw(&Rectangle::new(corners, state.stroke().stroke_width(1)))
        .map_err(PlotError::draw)?;
    let ink = RGBColor(20, 20, 20);
    let title_style = TextStyle::from(font(TITLE_PX)).color(&ink);
    root.draw(&Text::new(
        title.clone(),
        (area.x + PAD, area.y + PAD),
        title_style,
    ))
    .map_err(PlotError::draw)?;
    if !detail.is_empty() {
        let style = TextStyle::from(font(DETAIL_PX)).color(&RGBColor(60, 60, 60));
        let y = area.y + PAD + (TITLE_PX * 1.3) as i32;
        root.draw(&Text::new(detail.clone(), (area.x + PAD, y), style))
            .map_err(PlotError::draw)?;
    }
    Ok(())
}

/// A row of swatches, one per state drawn, starting at (`x`, `y`).
pub(crate) fn draw_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    states: &[State],
    x: i32,
    y: i32,
) -> Result<(), PlotError> {
    let style = TextStyle::from(font(12.0)).color(&RGBColor(40, 40, 40));
    let mut x = x;
    for state in states {
        let corners = [(x, y), (x + 14, y + 14)];
        root.draw(&Rectangle::new(corners, state.fill().filled()))
            .map_err(PlotError::draw)?;
        root.draw(&Rectangle::new(corners, state.stroke().stroke_width(1)))
            .map_err(PlotError::draw)?;
        root.draw(&Text::new(state.label(), (x + 19, y + 1), style.clone()))
            .map_err(PlotError::draw)?;
        x += 19 + text_width(&font(12.0), state.label())? as i32 + 18;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(title: &str, state: State) -> DagNode {
        DagNode {
            title: title.into(),
            detail: String::new(),
            state,
        }
    }

    /// source → a, b → gather.
    fn diamond() -> Dag {
        Dag {
            title: "run 1".into(),
            nodes: vec![
                node("source", State::Cached),
                node("a", State::Ran),
                node("b", State::Failed),
                node("gather", State::NotRun),
            ],
            edges: vec![(0, 1), (0, 2), (1, 3), (2, 3)],
            layers: vec![vec![0], vec![1, 2], vec![3]],
        }
    }

    #[test]
    fn columns_go_left_to_right_by_layer_and_boxes_do_not_overlap() {
        ensure_registered();
        let layout = diamond().layout().unwrap();
        let b = &layout.boxes;
        assert!(b[0].x + b[0].width < b[1].x, "{b:?}");
        assert_eq!(b[1].x, b[2].x);
        assert!(b[1].y + b[1].height <= b[2].y || b[2].y + b[2].height <= b[1].y);
        assert!(b[2].x + b[2].width < b[3].x);
        assert!(b.iter().all(|a| a.x + a.width <= layout.width as i32));
    }

    #[test]
    fn the_svg_names_every_instance_and_state_drawn() {
        let map = diamond().svg().unwrap();
        assert_eq!(map.areas.len(), 4);
        for text in ["source", "gather", "cached", "failed", "not run", "run 1"] {
            assert!(map.svg.contains(text), "{text} missing");
        }
        assert!(
            !map.svg.contains("interrupted"),
            "legend lists only states drawn"
        );
        assert!(diamond().png().unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn layers_that_miss_a_node_or_edges_that_point_back_are_refused() {
        let mut missing = diamond();
        missing.layers = vec![vec![0], vec![1, 2]];
        assert!(missing
            .svg()
            .unwrap_err()
            .to_string()
            .contains("(`gather`) is in no layer"));
        let mut backwards = diamond();
        backwards.edges.push((3, 0));
        assert!(backwards.svg().unwrap_err().to_string().contains("3 → 0"));
    }

    #[test]
    fn barycentre_ordering_uncrosses_edges() {
        // Layer 1 lists [b, a] but a's parent is drawn above b's: the sweep swaps them.
        let layers = vec![vec![0, 1], vec![3, 2]];
        let order = order_layers(&layers, &[(0, 2), (1, 3)], 4);
        assert_eq!(order[1], vec![2, 3]);
    }

    #[test]
    fn long_names_are_shortened_to_the_widest_box() {
        let mut dag = diamond();
        dag.nodes[1].detail = "x".repeat(400);
        let layout = dag.layout().unwrap();
        assert!(layout.texts[1].1.contains('…'));
        assert!(layout.boxes[1].width <= MAX_TEXT_WIDTH as i32 + 2 * PAD);
    }
}
