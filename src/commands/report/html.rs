//! Page assembly: escaping, the anchors that link sections to each other, time and
//! duration text, data: URIs, and the page frame (inline CSS and JS, navigation). The page
//! fetches nothing: every style, script and figure is inside the one file.

use base64::Engine as _;
use histodiff_engine::store::ExecutionId;
use histodiff_plot::{ImageMap, State};
use std::fmt::Write as _;

const CSS: &str = include_str!("assets/report.css");
const JS: &str = include_str!("assets/report.js");

/// One titled part of the page, listed in the navigation bar.
pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub body: String,
}

/// Text safe inside an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The id of an instance's section. Instance names keep their letters, digits and the
/// punctuation of matrix coordinates (`[`, `]`, `=`, `,`, `.`, `-`, `_`, `:`); any other
/// byte is written `~xx`, so two instances never share an id and the id needs no
/// escaping in a URL fragment.
pub fn instance_anchor(instance: &str) -> String {
    let mut id = String::from("instance-");
    for b in instance.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => id.push(b as char),
            b'[' | b']' | b'=' | b',' | b'.' | b'-' | b'_' | b':' => id.push(b as char),
            _ => {
                let _ = write!(id, "~{b:02x}");
            }
        }
    }
    id
}

/// The id of an execution's section.
pub fn exec_anchor(id: ExecutionId) -> String {
    format!("exec-{id}")
}

/// A link to an execution's section, showing `text`.
pub fn exec_link(id: ExecutionId, text: &str) -> String {
    format!("<a href=\"#{}\">{}</a>", exec_anchor(id), esc(text))
}

/// A hash or key shown by its short form, the full one in the tooltip.
pub fn abbreviated(full: &str, short: &str) -> String {
    format!("<code title=\"{}\">{}</code>", esc(full), esc(short))
}

/// A coloured badge naming a state.
pub fn badge(state: State) -> String {
    format!(
        "<span class=\"state\" style=\"background:{}\">{}</span>",
        state.css_fill(),
        state.label()
    )
}

/// `2024-05-01 12:00:03 UTC` from milliseconds since the epoch.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 07 min`.
pub fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000),
        ms => format!("{} h {:02} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// `data:<mime>;base64,…`.
pub fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `data:<mime>;charset=utf-8,…` for text (an SVG), percent-encoded: a third smaller than
/// base64 for text that is mostly safe characters (an SVG with an embedded PNG is mostly
/// base64 already), and safe inside a quoted attribute.
pub fn text_data_uri(mime: &str, text: &str) -> String {
    let mut out = format!("data:{mime};charset=utf-8,");
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => out.push(b as char),
            b'-' | b'_' | b'.' | b'~' | b'!' | b'$' | b'(' | b')' | b'*' | b'+' | b',' | b';'
            | b'=' | b':' | b'@' | b'/' | b'?' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// An inline SVG figure with a link laid over each of its areas: `links[k]` is
/// (href, tooltip) of area k. Positions are percentages, so the links follow the figure
/// when CSS scales it.
pub fn mapped_figure(map: &ImageMap, links: &[(String, String)], class: &str) -> String {
    let mut out = format!(
        "<div class=\"map {class}\" style=\"width:{}px\">{}",
        map.width, map.svg
    );
    let (w, h) = (f64::from(map.width), f64::from(map.height));
    for (area, (href, tip)) in map.areas.iter().zip(links) {
        let _ = write!(
            out,
            "<a class=\"area\" href=\"{}\" title=\"{}\" style=\"left:{:.3}%;top:{:.3}%;width:{:.3}%;height:{:.3}%\"></a>",
            esc(href),
            esc(tip),
            100.0 * f64::from(area.x) / w,
            100.0 * f64::from(area.y) / h,
            100.0 * f64::from(area.width) / w,
            100.0 * f64::from(area.height) / h,
        );
    }
    out.push_str("</div>");
    out
}

/// The whole document: header, navigation, sections, inline style and script.
pub fn page(title: &str, header: &str, sections: &[Section]) -> String {
    let mut out =
        String::with_capacity(sections.iter().map(|s| s.body.len()).sum::<usize>() + 16_384);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"histodiff {}\">\n<title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(title)
    );
    out.push_str("<nav id=\"nav\"><span class=\"brand\">histodiff</span>");
    for s in sections {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", s.id, esc(s.title));
    }
    out.push_str("</nav>\n<main>\n");
    out.push_str(header);
    for s in sections {
        let _ = write!(
            out,
            "\n<section id=\"{}\" class=\"part\">\n<h2>{}</h2>\n{}\n</section>\n",
            s.id,
            esc(s.title),
            s.body
        );
    }
    let _ = write!(out, "</main>\n<script>\n{JS}</script>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn instance_anchors_are_distinct_and_fragment_safe() {
        let a = instance_anchor("select[method=centroid,ratio=0.5]");
        assert_eq!(a, "instance-select[method=centroid,ratio=0.5]");
        let odd = instance_anchor("x[name=\"a b\"]");
        assert_eq!(odd, "instance-x[name=~22a~20b~22]");
        assert_ne!(instance_anchor("a~20"), instance_anchor("a "));
    }

    #[test]
    fn text_data_uris_need_no_escaping_in_an_attribute() {
        let uri = text_data_uri("image/svg+xml", "<svg a=\"1\">&#x;%</svg>");
        assert_eq!(
            uri,
            "data:image/svg+xml;charset=utf-8,%3Csvg%20a=%221%22%3E%26%23x;%25%3C/svg%3E"
        );
        assert!(!uri.contains(['"', '<', '>', '&', ' ']));
    }

    #[test]
    fn times_read_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_400), "12.4 s");
        assert_eq!(duration(185_000), "3 min 05 s");
        assert_eq!(duration(7_620_000), "2 h 07 min");
    }
}
