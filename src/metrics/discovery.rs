//! Discovered targets: how many each template makes checks of, the refreshes of its sources
//! that failed (its last good targets stay), and the targets it refused. Each series exists at
//! 0 from the moment its template is configured. (`medic_check_labels`, the discovered checks'
//! labels, is a per-check family: `checks.rs`.)

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::vocabulary::{SdMechanism, SdRefusal};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MechanismLabels {
    template: String,
    mechanism: SdMechanism,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    template: String,
    reason: SdRefusal,
}

pub(super) struct DiscoveryFamilies {
    targets: Family<TemplateLabels, Gauge>,
    failures: Family<MechanismLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
}

impl DiscoveryFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let targets = Family::<TemplateLabels, Gauge>::default();
        registry.register(
            "medic_sd_targets",
            "Discovered targets a check template makes checks of now",
            targets.clone(),
        );
        let failures = Family::<MechanismLabels, Counter>::default();
        registry.register(
            "medic_sd_refresh_failures",
            "Target lists that could not be read or parsed, by template and mechanism (the last good targets stay)",
            failures.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "medic_sd_targets_refused",
            "Discovered targets that made no check, by template and reason (collision, name, labels, check, max_targets)",
            refused.clone(),
        );
        DiscoveryFamilies {
            targets,
            failures,
            refused,
        }
    }
}

impl Metrics {
    /// A discovered check's labels, exported once as `medic_check_labels` (gone with the
    /// check's other series).
    pub fn set_check_labels(&self, check: &str, spec: std::sync::Arc<crate::config::CheckSpec>) {
        self.checks.set_labels(check, spec);
    }

    /// A template is configured: its series exist at 0 (a reload keeps the counts of one that
    /// stays).
    pub fn sd_template(&self, template: &str, mechanisms: &[SdMechanism]) {
        let families = &self.discovery;
        let _ = families.targets.get_or_create(&TemplateLabels {
            template: template.to_string(),
        });
        for &mechanism in mechanisms {
            let _ = families.failures.get_or_create(&MechanismLabels {
                template: template.to_string(),
                mechanism,
            });
        }
        for &reason in SdRefusal::ALL {
            let _ = families.refused.get_or_create(&RefusalLabels {
                template: template.to_string(),
                reason,
            });
        }
    }

    /// A template is gone: its series go too.
    pub fn sd_forget_template(&self, template: &str) {
        let families = &self.discovery;
        families.targets.remove(&TemplateLabels {
            template: template.to_string(),
        });
        for &mechanism in SdMechanism::ALL {
            families.failures.remove(&MechanismLabels {
                template: template.to_string(),
                mechanism,
            });
        }
        for &reason in SdRefusal::ALL {
            families.refused.remove(&RefusalLabels {
                template: template.to_string(),
                reason,
            });
        }
    }

    pub fn sd_refresh_failed(&self, template: &str, mechanism: SdMechanism) {
        self.discovery
            .failures
            .get_or_create(&MechanismLabels {
                template: template.to_string(),
                mechanism,
            })
            .inc();
    }

    pub fn sd_targets(&self, template: &str, count: usize) {
        self.discovery
            .targets
            .get_or_create(&TemplateLabels {
                template: template.to_string(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn sd_refused(&self, template: &str, reason: SdRefusal, count: usize) {
        self.discovery
            .refused
            .get_or_create(&RefusalLabels {
                template: template.to_string(),
                reason,
            })
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Metrics};
    use crate::vocabulary::{SdMechanism, SdRefusal};

    #[test]
    fn a_template_s_series_exist_at_zero_and_go_with_it() {
        let m = Metrics::new();
        m.sd_template("web", &[SdMechanism::FileSd, SdMechanism::DnsSd]);
        let text = m.encode(Format::PrometheusText);
        for line in [
            r#"medic_sd_targets{template="web"} 0"#,
            r#"medic_sd_refresh_failures_total{template="web",mechanism="file_sd"} 0"#,
            r#"medic_sd_refresh_failures_total{template="web",mechanism="dns_sd"} 0"#,
            r#"medic_sd_targets_refused_total{template="web",reason="collision"} 0"#,
            r#"medic_sd_targets_refused_total{template="web",reason="max_targets"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains(r#"mechanism="http_sd""#), "{text}");
        m.sd_refresh_failed("web", SdMechanism::DnsSd);
        m.sd_targets("web", 3);
        m.sd_refused("web", SdRefusal::Collision, 2);
        let text = m.encode(Format::PrometheusText);
        for line in [
            r#"medic_sd_targets{template="web"} 3"#,
            r#"medic_sd_refresh_failures_total{template="web",mechanism="dns_sd"} 1"#,
            r#"medic_sd_targets_refused_total{template="web",reason="collision"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        m.sd_forget_template("web");
        let text = m.encode(Format::PrometheusText);
        assert!(!text.contains(r#"template="web""#), "{text}");
    }
}
