//! Text from others made safe to show: a server's words in a log line, on a terminal, or in
//! a command's argv.

/// `text` as a log line or a terminal may show it: control characters (a server's ANSI
/// escapes, line breaks that would forge log lines) replaced by U+FFFD, cut to `chars`
/// characters.
pub(crate) fn printable(text: &str, chars: usize) -> String {
    text.chars().take(chars).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced_and_the_text_cut() {
        assert_eq!(
            printable("ok\u{1b}]0;owned\u{7}\r\nFAKE", 200),
            "ok\u{fffd}]0;owned\u{fffd}\u{fffd}\u{fffd}FAKE"
        );
        assert_eq!(printable(&"x".repeat(500), 64).len(), 64);
        // C1 controls too: U+009B is a terminal's CSI.
        assert_eq!(printable("a\u{9b}31mb", 10), "a\u{fffd}31mb");
    }
}
