//! Credentials as they arrive in `Authorization` headers, shared by the webhook's own
//! credential and the web config's `basic_auth_users`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub use crate::config::constant_time_eq;

/// The user name and password of a `Basic` credential (RFC 7617), or `None` for anything else.
pub fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let scheme_end = header.iter().position(|b| *b == b' ')?;
    if !header[..scheme_end].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = header[scheme_end + 1..].trim_ascii();
    let decoded = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_fully() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn basic_credentials_are_decoded_and_anything_else_refused() {
        assert_eq!(
            basic_credentials(b"Basic YW06czNjcjN0"),
            Some(("am".into(), "s3cr3t".into()))
        );
        // The password may hold colons; the user name may not.
        assert_eq!(
            basic_credentials(b"basic  dTpwOnc= "),
            Some(("u".into(), "p:w".into()))
        );
        for bad in [
            &b"Bearer YW06czNjcjN0"[..],
            b"Basic",
            b"Basic !!!",
            b"Basic bm9jb2xvbg==",
            b"",
        ] {
            assert_eq!(basic_credentials(bad), None, "{bad:?}");
        }
    }
}
