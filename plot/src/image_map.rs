//! A figure with the pixel box of each item it drew (a DAG node, a timeline bar), so a web
//! page can lay links over the picture: the figure stays a plain plotters drawing, and the
//! page decides what a click does.

/// One item's box, in pixels of the drawing (origin top left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// An SVG document, its size, and one [`Area`] per item, in the caller's item order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMap {
    pub svg: String,
    pub width: u32,
    pub height: u32,
    pub areas: Vec<Area>,
}
