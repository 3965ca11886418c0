//! Any text as a step template, rendered with hostile values in every escaping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic::template::{Escape, Template, Values};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = Template::parse(text) {
        let values = Values {
            check: Some("web".into()),
            chain: "c".into(),
            labels: [("service".to_string(), "$(x) \"&/?#\n".to_string())].into_iter().collect(),
            annotations: Default::default(),
        };
        for escape in [Escape::None, Escape::Url, Escape::Json] {
            if let Ok(out) = t.render(&values, escape) {
                if escape == Escape::Url {
                    assert!(!out.contains(' ') || text.contains(' '));
                }
            }
        }
    }
});
