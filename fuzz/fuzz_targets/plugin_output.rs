//! Any text as a Nagios plugin's output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic::checks::parse_plugin_output;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let out = parse_plugin_output(&text);
    for p in out.perfdata {
        assert!(p.value.is_finite());
    }
});
