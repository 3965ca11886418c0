//! Percent-encoding as RFC 3986 wants it: every byte but the unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`), which are never encoded (a run id `1a24ffaa6c9-a4cc…` stays as it
//! is in a link).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes that are encoded: all but the unreserved.
pub const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` as one path segment or query value.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unreserved_characters_are_left_alone() {
        assert_eq!(
            super::encode("1a24ffaa6c9-a4cc_x.y~z"),
            "1a24ffaa6c9-a4cc_x.y~z"
        );
        assert_eq!(super::encode("a b/c?d%e"), "a%20b%2Fc%3Fd%25e");
        assert_eq!(super::encode("é"), "%C3%A9");
    }
}
