//! Writing metric families in Prometheus' two text formats: the classic one (version 0.0.4,
//! what gobetween serves) and OpenMetrics 1.0. They differ in how a counter's family is named
//! (`x_total` in classic, `x` in OpenMetrics), in how HELP text is escaped, and in the final
//! `# EOF` line. Label values are escaped the same way in both: a server name or a backend host
//! holding `"`, `\` or a newline (from the API, from discovery) stays inside its quotes and
//! cannot start a series of its own.

use std::fmt::Write;

/// Which text format a scrape is answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The classic text format, version 0.0.4.
    Text,
    /// OpenMetrics text, 1.0.0 (0.0.1 is the same text).
    OpenMetrics,
}

/// Label names (fixed identifiers) and values (anything, escaped when written).
pub type Labels = Vec<(&'static str, String)>;

/// A sample value: counts are written as exact integers, everything else as a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(u64),
    Float(f64),
}

impl From<u64> for Number {
    fn from(n: u64) -> Number {
        Number::Int(n)
    }
}

impl From<f64> for Number {
    fn from(f: f64) -> Number {
        Number::Float(f)
    }
}

fn write_number(out: &mut String, number: Number) {
    match number {
        Number::Int(n) => write!(out, "{n}"),
        Number::Float(f) if f.is_nan() => write!(out, "NaN"),
        Number::Float(f) if f.is_infinite() => write!(out, "{}", if f > 0.0 { "+Inf" } else { "-Inf" }),
        // Rust writes the shortest text that reads back as the same float, never with an
        // exponent; both formats accept that.
        Number::Float(f) => write!(out, "{f}"),
    }
    .expect("writing to a String cannot fail");
}

/// One histogram: its labels, the sum of observations, and cumulative `(upper bound, count)`
/// buckets ending with the `+Inf` bucket (whose count is the total count).
pub struct Histogram {
    pub labels: Labels,
    pub sum: f64,
    pub buckets: Vec<(f64, u64)>,
}

/// Appends `value` with `\`, newline and (when `quote`) `"` escaped, as both formats require
/// for label values and OpenMetrics for HELP text; classic HELP text leaves `"` alone.
fn escape_into(out: &mut String, value: &str, quote: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// An exposition being written: families one after another, then [`Exposition::finish`].
pub struct Exposition {
    format: Format,
    out: String,
}

impl Exposition {
    pub fn new(format: Format) -> Exposition {
        Exposition { format, out: String::with_capacity(16 * 1024) }
    }

    /// HELP and TYPE lines; `family` is the name the TYPE line carries in this format.
    fn header(&mut self, family: &str, help: &str, kind: &str) {
        let out = &mut self.out;
        out.push_str("# HELP ");
        out.push_str(family);
        out.push(' ');
        escape_into(out, help, self.format == Format::OpenMetrics);
        out.push_str("\n# TYPE ");
        out.push_str(family);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }

    /// One sample line: `name{labels,extra} value`. `extra` is the histogram's `le`, written
    /// last as Go's client does.
    fn sample(&mut self, name: &str, labels: &[(&str, String)], extra: Option<(&str, &str)>, value: Number) {
        let out = &mut self.out;
        out.push_str(name);
        let all = labels.iter().map(|(k, v)| (*k, v.as_str())).chain(extra);
        for (i, (key, value)) in all.enumerate() {
            out.push(if i == 0 { '{' } else { ',' });
            out.push_str(key);
            out.push_str("=\"");
            escape_into(out, value, true);
            out.push('"');
        }
        if !labels.is_empty() || extra.is_some() {
            out.push('}');
        }
        out.push(' ');
        write_number(out, value);
        out.push('\n');
    }

    pub fn gauges<V: Into<Number>>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, V)>,
    ) {
        self.header(name, help, "gauge");
        for (labels, value) in samples {
            self.sample(name, &labels, None, value.into());
        }
    }

    /// A counter family; `name` is given without `_total`, which every sample carries.
    pub fn counters<V: Into<Number>>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, V)>,
    ) {
        let total = format!("{name}_total");
        // Classic scrapers (and Go's client) name the family after its samples; OpenMetrics
        // names it without the suffix.
        let family = match self.format {
            Format::Text => total.as_str(),
            Format::OpenMetrics => name,
        };
        self.header(family, help, "counter");
        for (labels, value) in samples {
            self.sample(&total, &labels, None, value.into());
        }
    }

    pub fn histograms(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = Histogram>) {
        self.header(name, help, "histogram");
        let (bucket, sum, count) = (format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"));
        let mut le = String::new();
        for h in samples {
            for &(bound, n) in &h.buckets {
                le.clear();
                write_number(&mut le, Number::Float(bound));
                self.sample(&bucket, &h.labels, Some(("le", &le)), Number::Int(n));
            }
            self.sample(&sum, &h.labels, None, Number::Float(h.sum));
            let total = h.buckets.last().map_or(0, |b| b.1);
            self.sample(&count, &h.labels, None, Number::Int(total));
        }
    }

    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server name that, written raw, would close its label, end the line and add a series.
    const HOSTILE: &str = "web\"} 1\ngobetween_forged{x=\"y\\";

    fn hostile_gauge(format: Format) -> String {
        let mut e = Exposition::new(format);
        e.gauges("gobetween_server_count", "Backends.", [(vec![("server", HOSTILE.to_string())], 2u64)]);
        e.finish()
    }

    /// Reads one sample line by the formats' grammar, `name{key="value",...} number`, where
    /// `\\`, `\"` and `\n` are the only escapes and an unescaped `"` ends a value.
    fn read_sample(line: &str) -> (String, Vec<(String, String)>, String) {
        let mut chars = line.chars();
        let mut name = String::new();
        let mut next = chars.next();
        while let Some(c) = next.filter(|&c| c != '{' && c != ' ') {
            name.push(c);
            next = chars.next();
        }
        let mut labels = Vec::new();
        if next == Some('{') {
            loop {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        '\\' => value.push(match chars.next().expect("dangling escape") {
                            'n' => '\n',
                            c @ ('\\' | '"') => c,
                            c => panic!("unknown escape \\{c}"),
                        }),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.push((key, value));
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("{other:?} after a label value: {line}"),
                }
            }
            next = chars.next();
        }
        assert_eq!(next, Some(' '), "{line}");
        (name, labels, chars.collect())
    }

    #[test]
    fn hostile_label_values_stay_inside_their_quotes() {
        for format in [Format::Text, Format::OpenMetrics] {
            let text = hostile_gauge(format);
            let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(samples.len(), 1, "{format:?}: one series only:\n{text}");
            assert_eq!(
                samples[0], r#"gobetween_server_count{server="web\"} 1\ngobetween_forged{x=\"y\\"} 2"#,
                "{format:?}"
            );
            let (name, labels, value) = read_sample(samples[0]);
            assert_eq!(name, "gobetween_server_count");
            assert_eq!(labels, [("server".to_string(), HOSTILE.to_string())]);
            assert_eq!(value, "2");
        }
    }

    #[test]
    fn help_is_escaped_per_format() {
        let help = "a \"quoted\" back\\slash\nand a second line";
        let mut classic = Exposition::new(Format::Text);
        classic.gauges::<u64>("g", help, []);
        assert_eq!(
            classic.finish(),
            "# HELP g a \"quoted\" back\\\\slash\\nand a second line\n# TYPE g gauge\n"
        );
        let mut open = Exposition::new(Format::OpenMetrics);
        open.gauges::<u64>("g", help, []);
        assert_eq!(
            open.finish(),
            "# HELP g a \\\"quoted\\\" back\\\\slash\\nand a second line\n# TYPE g gauge\n# EOF\n"
        );
    }

    #[test]
    fn counters_are_named_per_format() {
        let write = |format| {
            let mut e = Exposition::new(format);
            e.counters("c", "Things.", [(vec![("shard", "0".to_string())], 3u64), (Vec::new(), 4u64)]);
            e.finish()
        };
        assert_eq!(
            write(Format::Text),
            "# HELP c_total Things.\n# TYPE c_total counter\nc_total{shard=\"0\"} 3\nc_total 4\n"
        );
        assert_eq!(
            write(Format::OpenMetrics),
            "# HELP c Things.\n# TYPE c counter\nc_total{shard=\"0\"} 3\nc_total 4\n# EOF\n"
        );
    }

    #[test]
    fn histograms_and_numbers() {
        let mut e = Exposition::new(Format::Text);
        let h = Histogram {
            labels: vec![("server", "a".into())],
            sum: 0.25,
            buckets: vec![(0.0001, 1), (1.0, 3), (f64::INFINITY, 4)],
        };
        e.histograms("h_seconds", "Time.", [h]);
        e.gauges(
            "f",
            "Floats.",
            [(Vec::new(), f64::NAN), (Vec::new(), f64::NEG_INFINITY), (Vec::new(), 1.5e9)],
        );
        assert_eq!(
            e.finish(),
            "# HELP h_seconds Time.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{server=\"a\",le=\"0.0001\"} 1\n\
             h_seconds_bucket{server=\"a\",le=\"1\"} 3\n\
             h_seconds_bucket{server=\"a\",le=\"+Inf\"} 4\n\
             h_seconds_sum{server=\"a\"} 0.25\n\
             h_seconds_count{server=\"a\"} 4\n\
             # HELP f Floats.\n# TYPE f gauge\nf NaN\nf -Inf\nf 1500000000\n"
        );
    }
}
