//! Reading betwixt's `/metrics` with Python's prometheus_client, an implementation independent
//! of betwixt's: its classic text parser or its (strict) OpenMetrics parser, as the format the
//! scrape was answered in requires.
#![allow(dead_code)]

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// What Prometheus 2.x sends when it scrapes (it prefers OpenMetrics).
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Prints every sample of the exposition on stdin as JSON, with its family's name and type.
const PARSE: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
else:
    from prometheus_client.parser import text_string_to_metric_families as parse
samples = []
for family in parse(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    Classic,
    OpenMetrics,
}

/// Every sample in `text`; panics with the text when the parser rejects it.
pub fn parse_metrics(text: &str, parser: Parser) -> Vec<Value> {
    let which = match parser {
        Parser::Classic => "classic",
        Parser::OpenMetrics => "openmetrics",
    };
    let mut child = Command::new("python3")
        .args(["-c", PARSE, which])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse /metrics");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "prometheus_client is missing: scripts/test installs it (python3 -m pip install prometheus_client)"
    );
    assert!(out.status.success(), "prometheus_client's {which} parser rejected /metrics: {stderr}\n{text}");
    let samples: Value = sonic_rs::from_slice(&out.stdout).unwrap();
    samples.as_array().unwrap().iter().cloned().collect()
}

/// The one sample called `name` whose labels include all of `labels`.
pub fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s["name"].as_str() == Some(name))
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k].as_str() == Some(*v)))
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}
