//! Any bytes as a webhook body: parse, then route every alert through a few matchers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic::alertmanager::{parse_notification, Matcher};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = parse_notification(data) {
        let matchers = [r#"alertname="TargetDown""#, r#"instance=~".*:[0-9]+/?""#, r#"severity!~"info|none""#];
        for text in matchers {
            let m = Matcher::parse(text).expect("fixed matchers parse");
            for alert in &n.alerts {
                let _ = m.matches(&alert.labels);
            }
        }
    }
});
