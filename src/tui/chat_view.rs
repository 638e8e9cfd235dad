//! The chat panel: the shown conversation's scrollback, wrapped to the
//! panel's width, following new lines or held still while the user reads
//! older ones.
//!
//! It draws straight from the shared [`Model`], wrapping only the lines that
//! are on screen, so a full 10,000-line scrollback costs nothing per frame.
//! Its position is a line's sequence number in one pane (plus rows hidden
//! below it), not a row count, so it stays on the same line while new lines
//! arrive below, older history is inserted above, old lines are dropped or
//! the terminal is resized. Showing another pane follows its newest line.

use cursive::event::{Event, EventResult, MouseEvent};
use cursive::style::{BaseColor, Color, ColorStyle, Effect, Style};
use cursive::utils::lines::spans::LinesIterator;
use cursive::utils::markup::StyledString;
use cursive::{Printer, Vec2, View};

use super::{lock, Shared};
use crate::client::words::clock;
use crate::client::{Entry, EntryKind, Model, SystemKind};

/// Rows one mouse-wheel notch scrolls.
pub const WHEEL_ROWS: usize = 3;

/// Narrowest text column for a hanging indent; below it, continuation rows
/// start at the left edge.
const MIN_INDENTED_WIDTH: usize = 12;

/// Where the view is held: the bottom row on screen is the row `below` rows
/// above the last row of line `seq` of pane `pane`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    pane: u64,
    seq: u64,
    below: usize,
}

/// An anchor resolved in the shown pane: line `index` from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    index: usize,
    below: usize,
}

/// The chat panel's view.
pub struct ChatView {
    model: Shared,
    /// `None` while following the newest line (also when the anchor was
    /// set in a pane no longer shown).
    anchor: Option<Anchor>,
    /// The newest line when the user scrolled away from the bottom; lines
    /// below it are counted as new in the marker.
    seen: u64,
    /// The size at the last layout, for scrolling by pages.
    size: Vec2,
}

/// One screen row: styled pieces, after `indent` blank columns.
struct Row {
    indent: usize,
    /// Style, text and width in columns.
    spans: Vec<(Style, String, usize)>,
}

impl ChatView {
    /// A view of the shown pane of `model`, following new lines.
    pub fn new(model: Shared) -> Self {
        Self {
            model,
            anchor: None,
            seen: 0,
            size: Vec2::zero(),
        }
    }

    /// Goes back to the newest line and follows again.
    pub fn follow(&mut self) {
        self.anchor = None;
    }

    /// Scrolls back one page (keeping one row of context).
    pub fn page_up(&mut self) {
        self.scroll_up(self.page());
    }

    /// Scrolls forward one page; at the bottom, follows again.
    pub fn page_down(&mut self) {
        self.scroll_down(self.page());
    }

    fn page(&self) -> usize {
        self.text_height(true).saturating_sub(1).max(1)
    }

    /// Rows for lines: all of them, or one less for the marker.
    fn text_height(&self, marker: bool) -> usize {
        match marker {
            true => self.size.y.saturating_sub(1),
            false => self.size.y,
        }
    }

    /// The anchor in the shown pane, or `None` when following.
    fn pos(&self, model: &Model) -> Option<Pos> {
        let anchor = self.anchor?;
        if anchor.pane != model.shown().uid() {
            return None;
        }
        // A line dropped off the top leaves the view at the top.
        let index = model.scrollback().position(anchor.seq).unwrap_or(0);
        Some(Pos {
            index,
            below: anchor.below,
        })
    }

    fn anchor_at(model: &Model, pos: Pos) -> Option<Anchor> {
        model.scrollback().at(pos.index).map(|e| Anchor {
            pane: model.shown().uid(),
            seq: e.seq,
            below: pos.below,
        })
    }

    /// True if the oldest line's first row is on screen: scrolling further
    /// up should fetch older history.
    pub fn at_top(&self) -> bool {
        let model = lock(&self.model);
        let len = model.scrollback().len();
        if len == 0 {
            return true;
        }
        let pos = self.pos(&model);
        let height = self.text_height(pos.is_some());
        if self.size.x == 0 || height == 0 {
            return false;
        }
        let pos = pos.unwrap_or(Pos {
            index: len - 1,
            below: 0,
        });
        rows_through(&model, pos, self.size.x, height + 1) <= height
    }

    /// Scrolls `n` rows towards older lines, never past the oldest line at
    /// the top of the screen.
    pub fn scroll_up(&mut self, n: usize) {
        let model = lock(&self.model);
        let len = model.scrollback().len();
        let width = self.size.x;
        let height = self.text_height(true);
        if len == 0 || width == 0 || height == 0 {
            return;
        }
        let last = len - 1;
        let held = self.pos(&model);
        let start = held.unwrap_or(Pos {
            index: last,
            below: 0,
        });
        let mut index = start.index.min(last);
        let mut below = start.below + n;
        loop {
            let rows = row_count(&model, index, width);
            if below < rows {
                break;
            }
            if index == 0 {
                below = rows.saturating_sub(1);
                break;
            }
            below -= rows;
            index -= 1;
        }
        // Keep the screen full: the top row is at most the oldest line's first.
        let pos = match rows_through(&model, Pos { index, below }, width, height) {
            n if n >= height => Some(Pos { index, below }),
            _ => pos_from_top(&model, height, width),
        };
        if held.is_none() && pos.is_some() {
            self.seen = model.scrollback().last_seq().unwrap_or(0);
        }
        self.anchor = pos.and_then(|pos| Self::anchor_at(&model, pos));
    }

    /// Scrolls `n` rows towards newer lines; reaching the bottom follows
    /// again.
    pub fn scroll_down(&mut self, mut n: usize) {
        let model = lock(&self.model);
        let len = model.scrollback().len();
        let Some(pos) = self.pos(&model).filter(|_| len > 0) else {
            self.anchor = None;
            return;
        };
        let last = len - 1;
        let mut index = pos.index.min(last);
        let mut below = pos.below;
        loop {
            if n <= below {
                below -= n;
                break;
            }
            n -= below + 1;
            if index >= last {
                below = 0;
                break;
            }
            index += 1;
            below = row_count(&model, index, self.size.x).saturating_sub(1);
        }
        self.anchor = match (index, below) {
            (i, 0) if i >= last => None,
            _ => Self::anchor_at(&model, Pos { index, below }),
        };
    }

    /// The rows to draw, top first, and the marker text if scrolled back.
    fn visible(&self, size: Vec2) -> (Vec<Row>, Option<String>) {
        let model = lock(&self.model);
        let sb = model.scrollback();
        let len = sb.len();
        if len == 0 {
            return (Vec::new(), None);
        }
        let held = self.pos(&model);
        let marker = held.map(|_| {
            let new = sb.iter().rev().take_while(|e| e.seq > self.seen).count();
            match new {
                0 => " -- more below: PgDn -- ".to_owned(),
                1 => " -- 1 new line below: PgDn -- ".to_owned(),
                n => format!(" -- {n} new lines below: PgDn -- "),
            }
        });
        let height = match marker {
            Some(_) => size.y.saturating_sub(1),
            None => size.y,
        };
        let pos = held.unwrap_or(Pos {
            index: len - 1,
            below: 0,
        });
        let pane = model.shown().name();
        let mut index = pos.index.min(len - 1);
        let mut skip = pos.below;
        let mut rows = Vec::with_capacity(height);
        'lines: while rows.len() < height {
            let Some(entry) = sb.at(index) else { break };
            let mut entry_rows = render(entry, size.x, pane);
            let keep = entry_rows.len().saturating_sub(skip);
            skip = 0;
            entry_rows.truncate(keep);
            for row in entry_rows.into_iter().rev() {
                rows.push(row);
                if rows.len() == height {
                    break 'lines;
                }
            }
            if index == 0 {
                break;
            }
            index -= 1;
        }
        rows.reverse();
        (rows, marker)
    }
}

impl View for ChatView {
    fn draw(&self, printer: &Printer<'_, '_>) {
        let (rows, marker) = self.visible(printer.size);
        for (y, row) in rows.iter().enumerate() {
            let mut x = row.indent;
            for (style, text, width) in &row.spans {
                printer.with_style(*style, |p| p.print((x, y), text));
                x += width;
            }
        }
        if let Some(marker) = marker {
            let y = printer.size.y.saturating_sub(1);
            let style = Style::from(Effect::Reverse);
            printer.with_style(style, |p| {
                p.print_hline((0, y), printer.size.x, " ");
                let width = StyledString::plain(marker.as_str()).width();
                let x = printer.size.x.saturating_sub(width) / 2;
                p.print((x, y), &marker);
            });
        }
    }

    fn layout(&mut self, size: Vec2) {
        self.size = size;
    }

    fn required_size(&mut self, constraint: Vec2) -> Vec2 {
        constraint
    }

    fn on_event(&mut self, event: Event) -> EventResult {
        match event {
            Event::Mouse {
                event: MouseEvent::WheelUp,
                ..
            } => {
                self.scroll_up(WHEEL_ROWS);
                EventResult::with_cb(super::fetch_older)
            }
            Event::Mouse {
                event: MouseEvent::WheelDown,
                ..
            } => {
                self.scroll_down(WHEEL_ROWS);
                EventResult::Consumed(None)
            }
            _ => EventResult::Ignored,
        }
    }
}

/// How many rows the shown pane's line `index` takes at `width`.
fn row_count(model: &Model, index: usize, width: usize) -> usize {
    model
        .scrollback()
        .at(index)
        .map_or(0, |e| render(e, width, model.shown().name()).len())
}

/// Rows from the top of the oldest line down to `pos`, counting at most
/// `cap`.
fn rows_through(model: &Model, pos: Pos, width: usize, cap: usize) -> usize {
    let mut total = row_count(model, pos.index, width).saturating_sub(pos.below);
    let mut index = pos.index;
    while total < cap && index > 0 {
        index -= 1;
        total += row_count(model, index, width);
    }
    total
}

/// The position that puts the oldest line's first row at the top of a
/// screen `height` rows high, or `None` if everything fits.
fn pos_from_top(model: &Model, height: usize, width: usize) -> Option<Pos> {
    let last = model.scrollback().len().checked_sub(1)?;
    let mut left = height;
    for index in 0..=last {
        let rows = row_count(model, index, width);
        if left <= rows {
            let pos = Pos {
                index,
                below: rows - left,
            };
            return (index != last || pos.below != 0).then_some(pos);
        }
        left -= rows;
    }
    None
}

/// A nickname's colour: the same for the same nickname (in any case) on
/// every screen and every run.
pub fn nick_color(nick: &str) -> Color {
    const COLORS: [Color; 11] = [
        Color::Dark(BaseColor::Red),
        Color::Dark(BaseColor::Green),
        Color::Dark(BaseColor::Yellow),
        Color::Dark(BaseColor::Magenta),
        Color::Dark(BaseColor::Cyan),
        Color::Light(BaseColor::Red),
        Color::Light(BaseColor::Green),
        Color::Light(BaseColor::Yellow),
        Color::Light(BaseColor::Blue),
        Color::Light(BaseColor::Magenta),
        Color::Light(BaseColor::Cyan),
    ];
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let hash = nick
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    COLORS[(hash % COLORS.len() as u64) as usize]
}

/// The style of system lines and times: grey. Not the terminal's dim
/// effect: Cursive switches bold on before switching dim off, and terminals
/// turn both off with one code, so a bold cell after a dim one lost its bold.
pub fn dim() -> Style {
    Style::from(ColorStyle::front(Color::Light(BaseColor::Black)))
}

/// The style of a nickname.
pub fn nick_style(nick: &str) -> Style {
    Style::from(ColorStyle::front(nick_color(nick)))
}

/// Splits an entry into its prefix (time, sender or marker) and its text,
/// styled. `pane` is the shown pane's name: its own room need not be repeated.
fn parts(entry: &Entry, pane: &str) -> (StyledString, StyledString) {
    let dim = dim();
    let mut prefix = StyledString::styled(clock(entry.time), dim);
    prefix.append_plain(" ");
    let mut body = StyledString::new();
    match &entry.kind {
        EntryKind::Chat {
            room,
            nick,
            text,
            own,
            mention,
        } => {
            if !room.eq_ignore_ascii_case(pane) {
                prefix.append_styled(format!("{room} "), dim);
            }
            let mut style = nick_style(nick);
            if *own {
                style = style.combine(Effect::Bold);
            }
            if *mention {
                style = style.combine(Effect::Reverse);
            }
            prefix.append_styled(format!("<{nick}>"), style);
            prefix.append_plain(" ");
            let text_style = match mention {
                true => Style::from(Effect::Bold)
                    .combine(ColorStyle::front(Color::Light(BaseColor::Yellow))),
                false => Style::default(),
            };
            body.append_styled(text.as_str(), text_style);
        }
        EntryKind::Whisper {
            from,
            to,
            text,
            own,
        } => {
            let (arrow, partner) = match own {
                true => ("-> ", to),
                false => ("", from),
            };
            prefix.append_styled(arrow, dim);
            prefix.append_styled(
                format!("*{partner}*"),
                nick_style(partner).combine(Effect::Bold),
            );
            prefix.append_plain(" ");
            body.append_styled(text.as_str(), Effect::Italic);
        }
        EntryKind::System { kind, text } => {
            let (mark, style) = match kind {
                SystemKind::Join => ("-->", dim),
                SystemKind::Leave => ("<--", dim),
                SystemKind::Nick | SystemKind::Info => ("---", dim),
                SystemKind::Error => (
                    "!!!",
                    Style::from(ColorStyle::front(Color::Dark(BaseColor::Red))),
                ),
                SystemKind::Raw => ("???", dim),
            };
            prefix.append_styled(format!("{mark} "), style);
            body.append_styled(text.as_str(), style);
        }
    }
    (prefix, body)
}

/// Wraps an entry to `width` columns. Continuation rows are indented under
/// the text when there is room for it.
fn render(entry: &Entry, width: usize, room: &str) -> Vec<Row> {
    let width = width.max(1);
    let (prefix, body) = parts(entry, room);
    let prefix_width = prefix.width();
    let spans_of = |source: &StyledString, width: usize| -> Vec<Vec<(Style, String, usize)>> {
        LinesIterator::new(source, width)
            .map(|row| {
                row.resolve_stream(source)
                    .map(|span| (*span.attr, span.content.to_owned(), span.width))
                    .collect()
            })
            .collect()
    };
    if width >= prefix_width + MIN_INDENTED_WIDTH {
        let mut rows: Vec<Row> = spans_of(&body, width - prefix_width)
            .into_iter()
            .map(|spans| Row {
                indent: prefix_width,
                spans,
            })
            .collect();
        if rows.is_empty() {
            rows.push(Row {
                indent: prefix_width,
                spans: Vec::new(),
            });
        }
        let head: Vec<(Style, String, usize)> = prefix
            .spans()
            .map(|span| (*span.attr, span.content.to_owned(), span.width))
            .collect();
        rows[0].indent = 0;
        rows[0].spans.splice(0..0, head);
        rows
    } else {
        let mut whole = prefix;
        whole.append(body);
        let rows: Vec<Row> = spans_of(&whole, width)
            .into_iter()
            .map(|spans| Row { indent: 0, spans })
            .collect();
        match rows.is_empty() {
            true => vec![Row {
                indent: 0,
                spans: Vec::new(),
            }],
            false => rows,
        }
    }
}
