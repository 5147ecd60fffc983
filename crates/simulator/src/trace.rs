//! The run's trace: a hash of every traced event (always), and the events themselves as
//! JSON lines (when kept). Same seed, same trace, byte for byte.

use hacore::Millis;

/// The trace of a run.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
    /// Events traced.
    pub events: u64,
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

impl Trace {
    /// A trace that keeps its lines if `keep`.
    pub fn new(keep: bool) -> Trace {
        Trace { hash: 0xCBF2_9CE4_8422_2325, lines: keep.then(Vec::new), events: 0 }
    }

    fn mix(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.hash = (self.hash ^ *b as u64).wrapping_mul(0x0100_0000_01B3);
        }
    }

    /// Records an event at global time `t`.
    pub fn event(&mut self, t: Millis, kind: &str, fields: &[(&str, &str)]) {
        self.events += 1;
        self.mix(&t.to_le_bytes());
        self.mix(kind.as_bytes());
        for (k, v) in fields {
            self.mix(k.as_bytes());
            self.mix(v.as_bytes());
        }
        self.write(t, kind, fields);
    }

    /// Whether lines are kept (callers skip building detail they would not record).
    pub fn keeps(&self) -> bool {
        self.lines.is_some()
    }

    /// Records a detail line (every action, every operation outcome) when lines are kept.
    /// Details are not hashed: a run traced to a file has the same hash as one that is not.
    pub fn note(&mut self, t: Millis, kind: &str, fields: &[(&str, &str)]) {
        self.write(t, kind, fields);
    }

    fn write(&mut self, t: Millis, kind: &str, fields: &[(&str, &str)]) {
        if let Some(lines) = &mut self.lines {
            let mut line = format!("{{\"t\":{t},\"ev\":\"{kind}\"");
            for (k, v) in fields {
                line.push_str(",\"");
                line.push_str(k);
                line.push_str("\":\"");
                escape(v, &mut line);
                line.push('"');
            }
            line.push('}');
            lines.push(line);
        }
    }

    /// The hash of everything traced so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The kept lines (empty if not kept).
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}

/// One traced event read back from a JSON line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Global time (ms).
    pub t: Millis,
    /// Kind.
    pub kind: String,
    /// Fields in order.
    pub fields: Vec<(String, String)>,
}

impl TraceEvent {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses a line written by [`Trace::event`].
pub fn parse_line(line: &str) -> Option<TraceEvent> {
    let body = line.strip_prefix("{\"t\":")?.strip_suffix('}')?;
    let (t, mut rest) = body.split_once(',')?;
    let t = t.parse().ok()?;
    let mut strings = Vec::new();
    // Alternating "key":"value" strings, separated by ':' and ','.
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ':']);
        let mut chars = rest.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut s = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => s.push('\n'),
                (true, c) => s.push(c),
                (false, '\\') => {
                    escaped = true;
                    continue;
                }
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => s.push(c),
            }
            escaped = false;
        }
        strings.push(s);
        rest = &rest[end? + 1..];
    }
    let mut it = strings.into_iter();
    let (_, kind) = (it.next()?, it.next()?);
    let mut fields = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        fields.push((k, v));
    }
    Some(TraceEvent { t, kind, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut tr = Trace::new(true);
        tr.event(42, "reason", &[("node", "n1"), ("detail", "a \"quoted\", comma: x\\y")]);
        let e = parse_line(&tr.lines()[0]).expect("parses");
        assert_eq!(e.t, 42);
        assert_eq!(e.kind, "reason");
        assert_eq!(e.get("detail"), Some("a \"quoted\", comma: x\\y"));
        assert_eq!(e.get("node"), Some("n1"));
    }
}
