//! The Prometheus text exposition format 0.0.4: each family's HELP and TYPE lines, then its
//! samples, with label values and help texts escaped.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// Text in the exposition format: each family's HELP and TYPE lines, then its samples.
#[derive(Default)]
pub(super) struct Exposition {
    text: String,
    /// The family the next samples belong to.
    name: &'static str,
}

impl Exposition {
    pub(super) fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = write!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        self.name = name;
        self
    }

    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.text.push_str(self.name);
        for (i, (label, value)) in labels.iter().enumerate() {
            let value = value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n");
            let _ = write!(self.text, "{}{label}=\"{value}\"", if i == 0 { '{' } else { ',' });
        }
        if !labels.is_empty() {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    pub(super) fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(build: impl FnOnce(&mut Exposition)) -> String {
        let mut out = Exposition::default();
        build(&mut out);
        out.text
    }

    #[test]
    fn a_family_starts_with_its_help_and_type_lines() {
        let text = rendered(|out| {
            out.family("x_total", Kind::Counter, "Things counted.").sample(&[], 3);
            out.family("y", Kind::Gauge, "Things held.").sample(&[], 0);
        });
        let expected = "# HELP x_total Things counted.\n# TYPE x_total counter\nx_total 3\n\
                        # HELP y Things held.\n# TYPE y gauge\ny 0\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_escape_backslashes_quotes_and_line_breaks() {
        let text = rendered(|out| {
            out.family("x", Kind::Gauge, "X.").sample(&[("a", r#"1\2"3"#), ("b", "line\nbreak")], 7);
        });
        assert_eq!(text.lines().nth(2), Some(r#"x{a="1\\2\"3",b="line\nbreak"} 7"#));
    }

    #[test]
    fn help_text_escapes_backslashes_and_line_breaks_but_not_quotes() {
        let text = rendered(|out| {
            out.family("x", Kind::Gauge, "a \\ b\n\"c\"");
        });
        assert_eq!(text.lines().next(), Some(r#"# HELP x a \\ b\n"c""#));
    }
}
