//! A parser of Server-Sent Events (the WHATWG `text/event-stream` format), fed a response body
//! chunk by chunk as it arrives. It keeps the parts of the format a resumable feed relies on —
//! any line ending (LF, CRLF or CR, split across chunks or not), multi-line `data`, comments and
//! the rule that an `id` only becomes the resume point when its event is dispatched — and leaves
//! out `retry`, which the feed's own backoff replaces.

/// The longest line kept in memory; a peer sending more without a line ending is broken.
const MAX_LINE: usize = 1 << 20;

/// One dispatched block of fields (the lines before a blank line).
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The stream's last event ID once this block is dispatched: what to send as
    /// `Last-Event-ID` to resume after it. `None` when no `id` was ever given (or it was reset).
    pub id: Option<String>,
    /// The `event` field, empty when absent.
    pub event: String,
    /// The `data` lines joined with `\n`. Empty for a block that only set an `id`: such a block
    /// carries nothing to apply but still moves the resume point.
    pub data: String,
}

/// What one chunk contained.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Complete lines received, blank lines and comments (heartbeats) included.
    pub lines: usize,
    /// Blocks dispatched by this chunk, in order.
    pub events: Vec<SseEvent>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("event-stream line longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting this one belongs to that line ending.
    after_cr: bool,
    seen_first_line: bool,
    data: String,
    has_data: bool,
    event: String,
    /// The last event ID buffer: set by `id` fields, it survives dispatch (an event without an
    /// `id` keeps the previous one).
    last_id: Option<String>,
    id_in_block: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes`, the next part of the body. An incomplete last line waits for the next call.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Parsed, LineTooLong> {
        let mut parsed = Parsed::default();
        let mut rest = bytes;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.append(&rest[..end])?;
            self.end_line(&mut parsed);
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            if rest[end] == b'\r' && end + 1 == rest.len() {
                self.after_cr = true;
            }
            rest = &rest[end + if crlf { 2 } else { 1 }..];
        }
        self.append(rest)?;
        Ok(parsed)
    }

    /// Whether fields of an undispatched block are held: the server is in the middle of an event.
    pub fn mid_event(&self) -> bool {
        self.has_data || self.id_in_block || !self.event.is_empty()
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, parsed: &mut Parsed) {
        let raw = std::mem::take(&mut self.line);
        let decoded = String::from_utf8_lossy(&raw);
        let mut line: &str = &decoded;
        if !self.seen_first_line {
            self.seen_first_line = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        parsed.lines += 1;
        if line.is_empty() {
            if let Some(event) = self.dispatch() {
                parsed.events.push(event);
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            // The format ignores an id containing NUL (it could not be sent back in a header).
            "id" if !value.contains('\0') => {
                self.last_id = (!value.is_empty()).then(|| value.to_owned());
                self.id_in_block = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !self.has_data && !self.id_in_block {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        self.has_data = false;
        self.id_in_block = false;
        Some(SseEvent {
            id: self.last_id.clone(),
            event,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(Into::into),
            event: String::new(),
            data: data.into(),
        }
    }

    fn parse_all(chunks: &[&[u8]]) -> Parsed {
        let mut parser = SseParser::new();
        let mut all = Parsed::default();
        for chunk in chunks {
            let parsed = parser.push(chunk).unwrap();
            all.lines += parsed.lines;
            all.events.extend(parsed.events);
        }
        all
    }

    #[test]
    fn an_event_is_its_id_and_data_dispatched_by_a_blank_line() {
        let parsed = parse_all(&[b"id: 7\ndata: {\"kind\":\"token\"}\n\n"]);
        assert_eq!(
            parsed.events,
            vec![event(Some("7"), "{\"kind\":\"token\"}")]
        );
        assert_eq!(parsed.lines, 3);
    }

    #[test]
    fn data_lines_join_with_newlines() {
        let parsed = parse_all(&[b"data: {\ndata:  \"a\": 1\ndata\ndata: }\n\n"]);
        assert_eq!(parsed.events, vec![event(None, "{\n \"a\": 1\n\n}")]);
    }

    #[test]
    fn comments_are_lines_but_not_events() {
        let parsed = parse_all(&[b": keep-alive\n\n: keep-alive\n\n"]);
        assert_eq!(parsed.lines, 4);
        assert!(parsed.events.is_empty());
    }

    #[test]
    fn crlf_cr_and_lf_all_end_lines_even_split_across_chunks() {
        let parsed = parse_all(&[b"id: 1\r", b"\ndata: a\r", b"\r", b"\nid: 2\rdata: b\r\r"]);
        assert_eq!(
            parsed.events,
            vec![event(Some("1"), "a"), event(Some("2"), "b")]
        );
        assert_eq!(parsed.lines, 6);
    }

    #[test]
    fn lines_and_fields_may_be_split_anywhere() {
        let whole: &[u8] = b"id: abc\ndata: {\"kind\":\"session\"}\n\n";
        for split in 0..whole.len() {
            let parsed = parse_all(&[&whole[..split], &whole[split..]]);
            assert_eq!(
                parsed.events,
                vec![event(Some("abc"), "{\"kind\":\"session\"}")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn the_id_only_moves_when_its_event_is_dispatched_and_then_persists() {
        let mut parser = SseParser::new();
        let parsed = parser.push(b"id: 1\ndata: a\n\nid: 2\ndata: b\n").unwrap();
        // Event 2 is not complete: a reconnect now must resume after 1, not 2.
        assert_eq!(parsed.events, vec![event(Some("1"), "a")]);
        assert!(parser.mid_event());
        let parsed = parser.push(b"\ndata: c\n\n").unwrap();
        assert!(!parser.mid_event());
        assert_eq!(
            parsed.events,
            vec![event(Some("2"), "b"), event(Some("2"), "c")]
        );
    }

    #[test]
    fn an_id_alone_is_dispatched_to_move_the_cursor_and_an_empty_id_resets_it() {
        let parsed = parse_all(&[b"id: 9\n\nid\ndata: x\n\n"]);
        assert_eq!(parsed.events, vec![event(Some("9"), ""), event(None, "x")]);
    }

    #[test]
    fn ids_with_nul_unknown_fields_and_a_leading_bom_are_ignored() {
        let parsed = parse_all(&[b"\xEF\xBB\xBFid: 1\nid: 2\0\nretry: 10\nfoo\ndata: z\n\n"]);
        assert_eq!(parsed.events, vec![event(Some("1"), "z")]);
    }

    #[test]
    fn the_event_field_is_reported_and_reset_after_each_dispatch() {
        let parsed = parse_all(&[b"event: other\ndata: 1\n\ndata: 2\n\n"]);
        assert_eq!(parsed.events[0].event, "other");
        assert_eq!(parsed.events[1].event, "");
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_not_dispatched() {
        let parsed = parse_all(&[b"id: 1\ndata: a"]);
        assert!(parsed.events.is_empty());
        assert_eq!(parsed.lines, 1);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::new();
        let chunk = vec![b'x'; 64 * 1024];
        let refused = (0..=MAX_LINE / chunk.len()).any(|_| parser.push(&chunk).is_err());
        assert!(refused);
    }
}
