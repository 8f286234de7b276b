//! What goes into the SSE parser (`eventsource-stream`): text decoded as the SSE spec says, with
//! U+FFFD for invalid UTF-8 instead of failing the stream (WHATWG HTML, "Parsing an event
//! stream"), and at most [`MAX_EVENT`] bytes in one event, so a server that never ends an event
//! cannot make the bridge buffer without end. Neither is the parser's; both fit in one pass.

use bytes::Bytes;

/// The largest event the bridge takes: a tool result with a few images, and then some.
pub(crate) const MAX_EVENT: usize = 64 * 1024 * 1024;

/// An event larger than [`MAX_EVENT`].
#[derive(Debug, thiserror::Error)]
#[error("an event of the stream is larger than {} MiB", MAX_EVENT / (1024 * 1024))]
pub(crate) struct TooLarge;

/// Decodes and measures one stream's bytes, chunk by chunk.
#[derive(Default)]
pub(crate) struct Guard {
    /// The start of a UTF-8 sequence that the next chunk completes.
    partial: Vec<u8>,
    /// Bytes since the last blank line (the end of an event).
    in_event: usize,
    /// The current line has had no byte yet (so a line ending now is a blank line).
    line_empty: bool,
    /// The last byte was CR: an LF now belongs to the same line ending.
    after_cr: bool,
}

impl Guard {
    pub fn new() -> Guard {
        Guard { line_empty: true, ..Guard::default() }
    }

    /// `chunk` as UTF-8 text, the end of an incomplete sequence kept for the next chunk.
    pub fn pass(&mut self, chunk: &[u8]) -> Result<Bytes, TooLarge> {
        self.measure(chunk)?;
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(chunk);
        let mut text = String::with_capacity(bytes.len());
        let mut rest = bytes.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).expect("checked valid"));
                    match e.error_len() {
                        Some(bad) => {
                            text.push('\u{FFFD}');
                            rest = &after[bad..];
                        }
                        None => {
                            // Cut short at the chunk's end: completed by the next chunk.
                            self.partial = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        Ok(Bytes::from(text))
    }

    fn measure(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    if self.line_empty {
                        self.in_event = 0;
                    }
                    self.line_empty = true;
                }
                _ => {
                    self.after_cr = false;
                    self.line_empty = false;
                    self.in_event += 1;
                    if self.in_event > MAX_EVENT {
                        return Err(TooLarge);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_becomes_replacement_and_split_characters_are_joined() {
        let mut guard = Guard::new();
        let euro = "€".as_bytes();
        let first = guard.pass(&[b"data: a\xff b ".as_slice(), &euro[..1]].concat()).unwrap();
        let second = guard.pass(&[&euro[1..], b"\n\n".as_slice()].concat()).unwrap();
        assert_eq!(
            format!("{}{}", String::from_utf8_lossy(&first), String::from_utf8_lossy(&second)),
            "data: a\u{FFFD} b €\n\n"
        );
    }

    #[test]
    fn an_event_that_never_ends_is_refused_and_ended_events_reset_the_count() {
        let mut guard = Guard::new();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..200 {
            // Each line ends an event (CRLF twice): never too large.
            guard.pass(&line).unwrap();
            guard.pass(b"\r\n\r\n").unwrap();
        }
        let mut endless = Guard::new();
        let outcome = (0..=64)
            .try_for_each(|_| endless.pass(&line).map(drop).and_then(|()| endless.pass(b"\n").map(drop)));
        assert!(outcome.is_err(), "65 MiB of data lines without a blank line were taken");
    }
}
