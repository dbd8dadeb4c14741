//! Parse errors as Prometheus gives them: `line:column: parse error: message`.
//!
//! `promql-parser` builds the AST Hearth evaluates, but its errors carry no position
//! and its grammar errors all read "invalid promql query" (its generated parser's spans
//! are private), and it accepts a few queries Prometheus rejects. So every query is
//! first read by this module: a lexer and a recursive-descent parser that follow
//! Prometheus 3.5's `lex.go`, `generated_parser.y` and `checkAST`, and report the
//! errors Prometheus reports, at the positions it reports them. It builds no evaluable
//! AST; see syntax.md for how the LR parser's error rules map onto it.

mod check;
mod lexer;
mod parser;

pub use parser::MAX_NESTING;

/// One parse error: a byte offset into the query and Prometheus' message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseErr {
    pub pos: usize,
    pub message: String,
}

impl ParseErr {
    /// Prometheus' `ParseErr.Error()`: 1-based line and byte column.
    pub fn render(&self, query: &str) -> String {
        let pos = self.pos.min(query.len());
        let before = &query.as_bytes()[..pos];
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let col = match before.iter().rposition(|b| *b == b'\n') {
            Some(nl) => pos - nl,
            None => pos + 1,
        };
        format!("{line}:{col}: parse error: {}", self.message)
    }
}

/// The errors Prometheus reports for `query`, in its order; empty when the query is
/// valid PromQL as far as Prometheus' parser and type check go.
pub fn diagnose(query: &str) -> Vec<ParseErr> {
    let (tokens, lex_err) = lexer::tokenize(query);
    let mut p = parser::Parser::new(query, tokens, lex_err);
    let node = p.parse();
    let mut errors = std::mem::take(&mut p.errors);
    if let (Some(node), true) = (node, errors.is_empty()) {
        check::check(&node, &mut errors, p.input());
    }
    errors
}

/// `Err` with Prometheus' message (its errors with their positions, one per line)
/// when Prometheus would reject `query`.
pub fn check(query: &str) -> Result<(), String> {
    let errors = diagnose(query);
    if errors.is_empty() {
        return Ok(());
    }
    Err(errors
        .iter()
        .map(|e| e.render(query))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    quote_with(s, '"')
}

/// Go's `%q` of a rune; `None` is Go's `eof` (-1), printed as the replacement rune.
pub(crate) fn go_quote_rune(c: Option<char>) -> String {
    let c = c.unwrap_or('\u{FFFD}');
    quote_with(&c.to_string(), '\'')
}

fn quote_with(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(q: &str) -> String {
        diagnose(q)
            .first()
            .map(|e| e.render(q))
            .unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn positions_and_messages_match_prometheus() {
        // Each answer is what Prometheus gives for the query.
        let cases = [
            ("sum(", "1:5: parse error: unclosed left parenthesis"),
            ("foo bar", "1:5: parse error: unexpected identifier \"bar\""),
            ("1 +", "1:4: parse error: unexpected end of input"),
            ("foo{a=\"b", "1:7: parse error: unterminated quoted string"),
            (
                "foo{a=~}",
                "1:8: parse error: unexpected \"}\" in label matching, expected string",
            ),
            ("foo $", "1:5: parse error: unexpected character: '$'"),
            (
                "rate(foo)",
                "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector",
            ),
            (
                "sum by foo (x)",
                "1:8: parse error: unexpected identifier \"foo\" in grouping opts, expected \"(\"",
            ),
            (
                "foo[5m] + 1",
                "1:1: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "foo @ bar",
                "1:7: parse error: unexpected identifier \"bar\" in @, expected timestamp",
            ),
            ("foo)", "1:5: parse error: unexpected right parenthesis ')'"),
            (
                "topk(foo, bar)",
                "1:6: parse error: expected type scalar in aggregation parameter, got instant vector",
            ),
            (
                "label_replace(foo, 1, \"a\", \"b\", \"c\")",
                "1:20: parse error: expected type string in call to function \"label_replace\", got scalar",
            ),
            (
                "abs(foo, bar)",
                "1:1: parse error: expected 1 argument(s) in call to \"abs\", got 2",
            ),
            (
                "{}",
                "1:1: parse error: vector selector must contain at least one non-empty matcher",
            ),
            ("foo[5m][1m]", "1:8: parse error: ranges only allowed for vector selectors"),
            (
                "foo and 1",
                "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
            ),
            (
                "unknown_fn(foo)",
                "1:1: parse error: unknown function with name \"unknown_fn\"",
            ),
            (
                "foo{a=\"b\",,}",
                "1:11: parse error: unexpected \",\" in label matching, expected identifier or \"}\"",
            ),
            (
                "-\"a\"",
                "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"string\"",
            ),
            ("foo[1m:5m:2m]", "1:10: parse error: unexpected colon ':'"),
            (
                "count_values(1, foo)",
                "1:14: parse error: expected type string in aggregation parameter, got scalar",
            ),
            ("1 == bool 2 3", "1:13: parse error: unexpected number \"3\""),
            ("sum without() (x", "1:17: parse error: unclosed left parenthesis"),
            ("", "1:1: parse error: no expression found in input"),
            ("foo\n  + $", "2:5: parse error: unexpected character: '$'"),
        ];
        for (q, want) in cases {
            assert_eq!(first(q), want, "{q}");
        }
    }

    #[test]
    fn valid_queries_have_no_errors() {
        for q in [
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "foo offset -5m @ end()",
            "rate(foo[5m:30s] offset 1h)",
            "a * on(b) group_left(c) d",
            "-2 ^ 2",
            "label_join(up, \"x\", \",\", \"a\", \"b\", \"c\")",
            "count_values(\"v\", up) > bool 1",
            "{__name__=\"up\"}",
            "sum(foo) by (a,)",
            "1 == bool 1",
            "topk(3, foo) without (a)",
            "max",
            "by",
        ] {
            assert_eq!(diagnose(q), vec![], "{q}");
        }
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(go_quote_rune(Some('$')), "'$'");
        assert_eq!(go_quote_rune(Some('\'')), "'\\''");
    }
}
