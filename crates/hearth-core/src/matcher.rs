//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus' regex semantics: fully
//! anchored, and `.` matches a newline too (Prometheus 3.x).

use std::fmt;

use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct MatcherError {
    pub pattern: String,
    pub reason: String,
}

/// One label matcher. Regex matchers carry their compiled, anchored pattern.
#[derive(Clone)]
pub struct Matcher {
    pub op: MatchOp,
    pub name: String,
    pub value: String,
    re: Option<Regex>,
    /// For `=~"a|b|c"`: the literal alternatives, so the index can look them up directly.
    set: Option<Vec<String>>,
}

impl Matcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Matcher, MatcherError> {
        let (re, set) = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                let anchored = format!("^(?s:{value})$");
                let re = Regex::new(&anchored).map_err(|e| MatcherError {
                    pattern: value.to_string(),
                    reason: e.to_string(),
                })?;
                (Some(re), literal_alternatives(value))
            }
            _ => (None, None),
        };
        Ok(Matcher {
            op,
            name: name.to_string(),
            value: value.to_string(),
            re,
            set,
        })
    }

    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, name, value).expect("equality matchers always build")
    }

    /// Does a label value (empty string for an absent label) satisfy the matcher?
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::RegexMatch => self.regex_matches(v),
            MatchOp::RegexNoMatch => !self.regex_matches(v),
        }
    }

    fn regex_matches(&self, v: &str) -> bool {
        if let Some(set) = &self.set {
            return set.iter().any(|s| s == v);
        }
        self.re.as_ref().is_some_and(|r| r.is_match(v))
    }

    /// True when the matcher also matches series that lack the label entirely.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The literal values a positive matcher can match, when they are a finite set.
    pub fn literal_set(&self) -> Option<&[String]> {
        match self.op {
            MatchOp::RegexMatch => self.set.as_deref(),
            _ => None,
        }
    }
}

/// `a|b|c` with no regex metacharacters -> `["a","b","c"]`.
fn literal_alternatives(re: &str) -> Option<Vec<String>> {
    const META: &str = "\\.+*?()[]{}^$";
    if re.chars().any(|c| META.contains(c)) {
        return None;
    }
    Some(re.split('|').map(str::to_string).collect())
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Matcher) -> bool {
        self.op == o.op && self.name == o.name && self.value == o.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_dotall() {
        let m = Matcher::new(MatchOp::RegexMatch, "a", "fo.").unwrap();
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(m.matches("fo\n"));
        let s = Matcher::new(MatchOp::RegexMatch, "a", "x|y").unwrap();
        assert_eq!(s.literal_set().unwrap(), ["x", "y"]);
        assert!(s.matches("y") && !s.matches("xy"));
        let n = Matcher::new(MatchOp::RegexNoMatch, "a", "").unwrap();
        assert!(!n.matches_empty());
        assert!(Matcher::new(MatchOp::RegexMatch, "a", "(").is_err());
    }
}
