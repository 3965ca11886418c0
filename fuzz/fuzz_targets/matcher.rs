//! Any text as a route matcher; a parsed one is applied to labels taken from the same input.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use medic::alertmanager::Matcher;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (matcher, value) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(m) = Matcher::parse(matcher) {
        let _ = m.to_string();
        let labels: BTreeMap<String, String> = [("alertname".to_string(), value.to_string()), ("a".to_string(), value.to_string())]
            .into_iter()
            .collect();
        let _ = m.matches(&labels);
    }
});
