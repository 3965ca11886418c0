//! Anomaly-detector variants over the NAB part (run by scripts/eval-nab.sh): writes one results
//! folder per variant for scripts/lib/nab_cv.py, and prints each variant's cost per sample and
//! memory per prediction.
#![forbid(unsafe_code)]

use medic::detect::parse_timestamp;
use medic::forecast::{
    AnomalyDetector, AnomalyParams, TEST_JUMP, TEST_MEAN, TEST_SEASONAL, TEST_SHAPE, TEST_VALUE,
    TEST_VOL,
};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// (timestamp as written, unix seconds, value) per row.
type Rows = Vec<(String, f64, f64)>;

fn load(path: &Path) -> Rows {
    let r = std::io::BufReader::new(std::fs::File::open(path).expect("open"));
    r.lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.ok()?;
            let (a, b) = l.split_once(',')?;
            Some((
                a.to_string(),
                parse_timestamp(a)?,
                b.trim().parse().unwrap_or(f64::NAN),
            ))
        })
        .collect()
}

/// The variants compared: the shipped default first, the first detector (the three rank tests
/// alone) and the previous default (no long mean), then one knob of the default at a time.
fn variants() -> Vec<(String, AnomalyParams)> {
    let d = AnomalyParams::default();
    let mut v = vec![("default".to_string(), d.clone())];
    let mut add = |name: &str, p: AnomalyParams| v.push((name.to_string(), p));
    let three = TEST_VALUE | TEST_JUMP | TEST_SEASONAL;
    add(
        "rank-tests",
        AnomalyParams {
            tests: three,
            escalate: 0.0,
            damp: 0.5,
            mean_long: 0,
            ..d.clone()
        },
    );
    // The default before the second, longer mean test.
    add(
        "no-long-mean",
        AnomalyParams {
            mean_long: 0,
            ..d.clone()
        },
    );
    for mean_long in [64usize, 256] {
        add(
            &format!("long-mean{mean_long}"),
            AnomalyParams {
                mean_long,
                ..d.clone()
            },
        );
    }
    add(
        "no-mean",
        AnomalyParams {
            tests: three | TEST_SHAPE,
            ..d.clone()
        },
    );
    add(
        "no-shape",
        AnomalyParams {
            tests: three | TEST_MEAN,
            ..d.clone()
        },
    );
    add(
        "vol",
        AnomalyParams {
            tests: d.tests | TEST_VOL,
            ..d.clone()
        },
    );
    for mean in [8usize, 24] {
        add(&format!("mean{mean}"), AnomalyParams { mean, ..d.clone() });
    }
    for shape in [12usize, 32] {
        add(
            &format!("shape{shape}"),
            AnomalyParams { shape, ..d.clone() },
        );
    }
    for vigilance in [0.95, 0.999] {
        add(
            &format!("vigilance{vigilance}"),
            AnomalyParams {
                vigilance,
                ..d.clone()
            },
        );
    }
    for prototypes in [64usize, 256] {
        add(
            &format!("prototypes{prototypes}"),
            AnomalyParams {
                prototypes,
                ..d.clone()
            },
        );
    }
    add(
        "centred",
        AnomalyParams {
            centred: true,
            ..d.clone()
        },
    );
    for hold in [150usize, 600] {
        add(&format!("hold{hold}"), AnomalyParams { hold, ..d.clone() });
    }
    add(
        "escalate0",
        AnomalyParams {
            escalate: 0.0,
            ..d.clone()
        },
    );
    add(
        "alarm0.4",
        AnomalyParams {
            alarm: 0.4,
            ..d.clone()
        },
    );
    add(
        "gpd0.1",
        AnomalyParams {
            xi_max: 0.1,
            ..d.clone()
        },
    );
    add(
        "damp0.5",
        AnomalyParams {
            damp: 0.5,
            ..d.clone()
        },
    );
    add(
        "history3000",
        AnomalyParams {
            history: 3000,
            ..d.clone()
        },
    );
    v
}

/// Extra variants from `MEDIC_NAB_VARIANTS` ("name:key=value,key=value;name2:..."), each the
/// default with the named knobs changed, so that a knob can be explored without a rebuild.
fn extra_variants() -> Vec<(String, AnomalyParams)> {
    let Ok(spec) = std::env::var("MEDIC_NAB_VARIANTS") else {
        return Vec::new();
    };
    spec.split(';')
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            let (name, knobs) = v.split_once(':').unwrap_or((v, ""));
            let mut p = AnomalyParams::default();
            for kv in knobs.split(',').filter(|k| !k.is_empty()) {
                let (k, val) = kv.split_once('=').expect("knob=value");
                let f = || val.parse::<f64>().expect("number");
                let u = || val.parse::<usize>().expect("integer");
                match k {
                    "history" => p.history = u(),
                    "tail" => p.tail = f(),
                    "depth" => p.depth = f(),
                    "alarm" => p.alarm = f(),
                    "hold" => p.hold = u(),
                    "damp" => p.damp = f(),
                    "tests" => p.tests = val.parse().expect("bits"),
                    "likelihood" => p.likelihood = u(),
                    "likelihood_history" => p.likelihood_history = u(),
                    "recent" => p.recent = u(),
                    "mean" => p.mean = u(),
                    "shape" => p.shape = u(),
                    "prototypes" => p.prototypes = u(),
                    "vigilance" => p.vigilance = f(),
                    "xi_max" => p.xi_max = f(),
                    "escalate" => p.escalate = f(),
                    "centred" => p.centred = val == "true",
                    "mean_long" => p.mean_long = u(),
                    other => panic!("unknown knob {other}"),
                }
            }
            (name.trim().to_string(), p)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let data = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/nab/data").into()),
    );
    let out = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "target/nab-variants".into()),
    );
    let only: Option<Vec<String>> = args
        .get(2)
        .map(|s| s.split(',').map(String::from).collect());
    let mut files = Vec::new();
    for cat in std::fs::read_dir(&data).expect("data dir") {
        for f in std::fs::read_dir(cat.expect("entry").path()).expect("cat dir") {
            files.push(f.expect("entry").path());
        }
    }
    files.sort();
    let series: Vec<(PathBuf, Rows)> = files.into_iter().map(|f| (f.clone(), load(&f))).collect();
    println!("{:<28} {:>12} {:>14}", "variant", "µs/sample", "bytes/pred");
    for (name, params) in variants().into_iter().chain(extra_variants()) {
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let mut elapsed = std::time::Duration::ZERO;
        let mut samples = 0u64;
        let mut memory = 0usize;
        for (path, rows) in &series {
            let cat = path.parent().and_then(|p| p.file_name()).expect("category");
            let dir = out.join(&name).join(cat);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let mut d = AnomalyDetector::with_params(params.clone());
            let start = std::time::Instant::now();
            let scores: Vec<f64> = rows.iter().map(|(_, t, v)| d.observe(*t, *v)).collect();
            elapsed += start.elapsed();
            samples += rows.len() as u64;
            memory = memory.max(d.memory_bytes());
            let f =
                std::fs::File::create(dir.join(path.file_name().expect("name"))).expect("create");
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "timestamp,anomaly_score").expect("write");
            for ((ts, _, _), s) in rows.iter().zip(scores) {
                writeln!(w, "{ts},{s}").expect("write");
            }
        }
        println!(
            "{:<28} {:>12.3} {:>14}",
            name,
            elapsed.as_secs_f64() * 1e6 / samples.max(1) as f64,
            memory
        );
    }
}
