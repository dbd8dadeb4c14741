//! Prometheus' type check (`checkAST`): argument types and counts, operand types,
//! vector matching rules and selector rules, each reported at the node it is about.

use super::lexer::Kind;
use super::parser::{Matcher, Node};
use super::{go_quote, ParseErr};

/// The type of a PromQL value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
    Str,
}

impl ValueType {
    /// Prometheus' `ValueType` string.
    fn name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
            ValueType::Str => "string",
        }
    }

    /// Prometheus' `DocumentedType`.
    fn documented(self) -> &'static str {
        match self {
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            other => other.name(),
        }
    }
}

/// A function's signature: argument types, how many optional trailing arguments it
/// takes (-1: any number, as Prometheus' `Variadic`), and its result type.
pub type Signature = (&'static [ValueType], i32, ValueType);

/// Prometheus 3.5's function table (parser/functions.go), signatures only.
pub fn function(name: &str) -> Option<Signature> {
    use ValueType::{Matrix as M, Scalar as S, Str as T, Vector as V};
    Some(match name {
        "abs" => (&[V], 0, V),
        "absent" => (&[V], 0, V),
        "absent_over_time" => (&[M], 0, V),
        "acos" => (&[V], 0, V),
        "acosh" => (&[V], 0, V),
        "asin" => (&[V], 0, V),
        "asinh" => (&[V], 0, V),
        "atan" => (&[V], 0, V),
        "atanh" => (&[V], 0, V),
        "avg_over_time" => (&[M], 0, V),
        "ceil" => (&[V], 0, V),
        "changes" => (&[M], 0, V),
        "clamp" => (&[V, S, S], 0, V),
        "clamp_max" => (&[V, S], 0, V),
        "clamp_min" => (&[V, S], 0, V),
        "cos" => (&[V], 0, V),
        "cosh" => (&[V], 0, V),
        "count_over_time" => (&[M], 0, V),
        "day_of_month" => (&[V], 1, V),
        "day_of_week" => (&[V], 1, V),
        "day_of_year" => (&[V], 1, V),
        "days_in_month" => (&[V], 1, V),
        "deg" => (&[V], 0, V),
        "delta" => (&[M], 0, V),
        "deriv" => (&[M], 0, V),
        "double_exponential_smoothing" => (&[M, S, S], 0, V),
        "exp" => (&[V], 0, V),
        "floor" => (&[V], 0, V),
        "histogram_avg" => (&[V], 0, V),
        "histogram_count" => (&[V], 0, V),
        "histogram_fraction" => (&[S, S, V], 0, V),
        "histogram_quantile" => (&[S, V], 0, V),
        "histogram_stddev" => (&[V], 0, V),
        "histogram_stdvar" => (&[V], 0, V),
        "histogram_sum" => (&[V], 0, V),
        "hour" => (&[V], 1, V),
        "idelta" => (&[M], 0, V),
        "increase" => (&[M], 0, V),
        "info" => (&[V, V], 1, V),
        "irate" => (&[M], 0, V),
        "label_join" => (&[V, T, T, T], -1, V),
        "label_replace" => (&[V, T, T, T, T], 0, V),
        "last_over_time" => (&[M], 0, V),
        "ln" => (&[V], 0, V),
        "log10" => (&[V], 0, V),
        "log2" => (&[V], 0, V),
        "mad_over_time" => (&[M], 0, V),
        "max_over_time" => (&[M], 0, V),
        "min_over_time" => (&[M], 0, V),
        "minute" => (&[V], 1, V),
        "month" => (&[V], 1, V),
        "pi" => (&[], 0, S),
        "predict_linear" => (&[M, S], 0, V),
        "present_over_time" => (&[M], 0, V),
        "quantile_over_time" => (&[S, M], 0, V),
        "rad" => (&[V], 0, V),
        "rate" => (&[M], 0, V),
        "resets" => (&[M], 0, V),
        "round" => (&[V, S], 1, V),
        "scalar" => (&[V], 0, S),
        "sgn" => (&[V], 0, V),
        "sin" => (&[V], 0, V),
        "sinh" => (&[V], 0, V),
        "sort" => (&[V], 0, V),
        "sort_by_label" => (&[V, T], -1, V),
        "sort_by_label_desc" => (&[V, T], -1, V),
        "sort_desc" => (&[V], 0, V),
        "sqrt" => (&[V], 0, V),
        "stddev_over_time" => (&[M], 0, V),
        "stdvar_over_time" => (&[M], 0, V),
        "sum_over_time" => (&[M], 0, V),
        "tan" => (&[V], 0, V),
        "tanh" => (&[V], 0, V),
        "time" => (&[], 0, S),
        "timestamp" => (&[V], 0, V),
        "ts_of_last_over_time" => (&[M], 0, V),
        "ts_of_max_over_time" => (&[M], 0, V),
        "ts_of_min_over_time" => (&[M], 0, V),
        "vector" => (&[S], 0, V),
        "year" => (&[V], 1, V),
        // Newer than 3.5 (experimental in Prometheus 3.7); Hearth evaluates them.
        "first_over_time" => (&[M], 0, V),
        "ts_of_first_over_time" => (&[M], 0, V),
        _ => return None,
    })
}

pub fn check(node: &Node, errors: &mut Vec<ParseErr>, input: &str) {
    Checker { errors, input }.check(node);
}

struct Checker<'e, 'i> {
    errors: &'e mut Vec<ParseErr>,
    input: &'i str,
}

impl Checker<'_, '_> {
    fn error(&mut self, pos: usize, message: String) {
        self.errors.push(ParseErr { pos, message });
    }

    /// A node's type, without checking it.
    fn type_of(node: &Node) -> ValueType {
        match node {
            Node::Number { .. } => ValueType::Scalar,
            Node::Str { .. } => ValueType::Str,
            Node::Vector { .. } | Node::Aggregate { .. } => ValueType::Vector,
            Node::Matrix { .. } | Node::Subquery { .. } => ValueType::Matrix,
            Node::Paren { expr, .. } | Node::Unary { expr, .. } => Self::type_of(expr),
            Node::Binary { lhs, rhs, .. } => {
                if Self::type_of(lhs) == ValueType::Scalar
                    && Self::type_of(rhs) == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Node::Call { name, .. } => function(name).map_or(ValueType::Vector, |f| f.2),
        }
    }

    fn expect_type(&mut self, node: &Node, want: ValueType, context: &str) {
        let got = self.check(node);
        if got != want {
            self.error(
                node.start(),
                format!(
                    "expected type {} in {context}, got {}",
                    want.documented(),
                    got.documented()
                ),
            );
        }
    }

    /// Checks a node and its children in Prometheus' order; returns its type.
    fn check(&mut self, node: &Node) -> ValueType {
        let typ = Self::type_of(node);
        match node {
            Node::Aggregate {
                op, param, expr, ..
            } => {
                if let Some(expr) = expr {
                    self.expect_type(expr, ValueType::Vector, "aggregation expression");
                }
                if let Some(param) = param {
                    let want = if *op == Kind::CountValues {
                        ValueType::Str
                    } else {
                        ValueType::Scalar
                    };
                    self.expect_type(param, want, "aggregation parameter");
                }
            }
            Node::Binary {
                lhs,
                rhs,
                op,
                return_bool,
                on,
                matching,
                include,
                grouped,
            } => self.check_binary(
                node,
                lhs,
                rhs,
                *op,
                *return_bool,
                *on,
                matching,
                include,
                *grouped,
            ),
            Node::Call {
                start, name, args, ..
            } => self.check_call(*start, name, args),
            Node::Paren { expr, .. } => {
                self.check(expr);
            }
            Node::Unary { start, expr } => {
                let t = self.check(expr);
                if t != ValueType::Scalar && t != ValueType::Vector {
                    self.error(
                        *start,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            go_quote(t.documented())
                        ),
                    );
                }
            }
            Node::Subquery { expr, .. } => {
                let t = self.check(expr);
                if t != ValueType::Vector {
                    self.error(
                        node.start(),
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            t.name()
                        ),
                    );
                }
            }
            Node::Matrix { vector, .. } => {
                self.check(vector);
            }
            Node::Vector {
                start,
                name,
                matchers,
                ..
            } => self.check_selector(*start, name.as_deref(), matchers),
            Node::Number { .. } | Node::Str { .. } => {}
        }
        typ
    }

    fn check_selector(&mut self, start: usize, name: Option<&str>, matchers: &[Matcher]) {
        if let Some(name) = name {
            for m in matchers.iter().filter(|m| m.name == "__name__") {
                self.error(
                    start,
                    format!(
                        "metric name must not be set twice: {} or {}",
                        go_quote(name),
                        go_quote(&m.value)
                    ),
                );
            }
            return;
        }
        if !matchers.iter().any(|m| !matches_empty(m)) {
            self.error(
                start,
                "vector selector must contain at least one non-empty matcher".into(),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_binary(
        &mut self,
        node: &Node,
        lhs: &Node,
        rhs: &Node,
        op: Kind,
        return_bool: bool,
        on: bool,
        matching: &[String],
        include: &[String],
        grouped: bool,
    ) {
        let lt = self.check(lhs);
        let rt = self.check(rhs);
        let comparison = matches!(
            op,
            Kind::Eqlc | Kind::Neq | Kind::Lss | Kind::Lte | Kind::Gtr | Kind::Gte
        );
        let set = matches!(op, Kind::Land | Kind::Lor | Kind::Lunless);
        // The operator's position: the first non-space after the left operand.
        let op_pos = lhs.end()
            + self.input[lhs.end()..]
                .find(|c: char| !matches!(c, ' ' | '\t' | '\n' | '\r'))
                .unwrap_or(0);
        if return_bool && !comparison {
            self.error(
                op_pos,
                "bool modifier can only be used on comparison operators".into(),
            );
        }
        if comparison && !return_bool && lt == ValueType::Scalar && rt == ValueType::Scalar {
            self.error(
                op_pos,
                "comparisons between scalars must use BOOL modifier".into(),
            );
        }
        if on {
            for l in matching.iter().filter(|l| include.contains(l)) {
                self.error(
                    op_pos,
                    format!(
                        "label {} must not occur in ON and GROUP clause at once",
                        go_quote(l)
                    ),
                );
            }
        }
        let start = node.start();
        if lt != ValueType::Scalar && lt != ValueType::Vector {
            self.error(
                lhs.start(),
                "binary expression must contain only scalar and instant vector types".into(),
            );
        }
        if rt != ValueType::Scalar && rt != ValueType::Vector {
            self.error(
                rhs.start(),
                "binary expression must contain only scalar and instant vector types".into(),
            );
        }
        if lt != ValueType::Vector || rt != ValueType::Vector {
            if !matching.is_empty() {
                self.error(
                    start,
                    "vector matching only allowed between instant vectors".into(),
                );
            }
        } else if set && grouped {
            self.error(
                start,
                format!(
                    "no grouping allowed for {} operation",
                    go_quote(op.spelling())
                ),
            );
        }
        if (lt == ValueType::Scalar || rt == ValueType::Scalar) && set {
            self.error(
                start,
                format!(
                    "set operator {} not allowed in binary scalar expression",
                    go_quote(op.spelling())
                ),
            );
        }
    }

    fn check_call(&mut self, start: usize, name: &str, args: &[Node]) {
        let Some((types, variadic, _)) = function(name) else {
            return;
        };
        let nargs = types.len();
        if variadic == 0 {
            if nargs != args.len() {
                self.error(
                    start,
                    format!(
                        "expected {nargs} argument(s) in call to {}, got {}",
                        go_quote(name),
                        args.len()
                    ),
                );
            }
        } else {
            let na = nargs - 1;
            if na > args.len() {
                self.error(
                    start,
                    format!(
                        "expected at least {na} argument(s) in call to {}, got {}",
                        go_quote(name),
                        args.len()
                    ),
                );
            } else if variadic > 0 && na + (variadic as usize) < args.len() {
                self.error(
                    start,
                    format!(
                        "expected at most {} argument(s) in call to {}, got {}",
                        na + variadic as usize,
                        go_quote(name),
                        args.len()
                    ),
                );
            }
        }
        if name == "info" && args.len() > 1 {
            let second = &args[1];
            if Self::type_of(second) != ValueType::Vector {
                self.error(
                    start,
                    format!(
                        "expected type instant vector in call to function \"info\", got {}",
                        Self::type_of(second).documented()
                    ),
                );
            }
            match second {
                Node::Vector { name: Some(_), .. } => self.error(
                    second.start(),
                    "expected label selectors only, got vector selector instead".into(),
                ),
                Node::Vector { .. } => {}
                _ => self.error(second.start(), "expected label selectors only".into()),
            }
        }
        for (i, arg) in args.iter().enumerate() {
            let i = if i >= nargs {
                if variadic == 0 {
                    break;
                }
                nargs - 1
            } else {
                i
            };
            // info's label selector may match everything: Prometheus skips the
            // empty-matcher rule there.
            let t = if name == "info" && i == 1 && matches!(arg, Node::Vector { name: None, .. }) {
                ValueType::Vector
            } else {
                self.check(arg)
            };
            if t != types[i] {
                self.error(
                    arg.start(),
                    format!(
                        "expected type {} in call to function {}, got {}",
                        types[i].documented(),
                        go_quote(name),
                        t.documented()
                    ),
                );
            }
        }
    }
}

/// Whether a matcher matches the empty string (Prometheus' `Matches("")`).
fn matches_empty(m: &Matcher) -> bool {
    let regex_empty =
        || regex::Regex::new(&format!("^(?s:{})$", m.value)).is_ok_and(|re| re.is_match(""));
    match m.op {
        Kind::Eql => m.value.is_empty(),
        Kind::Neq => !m.value.is_empty(),
        Kind::EqlRegex => regex_empty(),
        Kind::NeqRegex => !regex_empty(),
        _ => false,
    }
}
