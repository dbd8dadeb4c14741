//! A recursive-descent reading of Prometheus' PromQL grammar (`generated_parser.y`)
//! that keeps positions. It builds only what error reporting needs: node kinds, their
//! start and end, and the facts the type check reads.
//!
//! Prometheus' LR parser reports a syntax error at the first token that cannot
//! continue the input, naming the innermost open construct that has an error rule
//! (aggregation, grouping opts, label matching, offset, `@`, subquery or range). A
//! recursive descent finds the same token; `ctx` mirrors those error rules: a
//! construct pushes its context when it opens, updates what it expects as it goes, and
//! the innermost context names the error.

use super::lexer::{Kind, LexError, Token};
use super::ParseErr;

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: Kind,
    pub value: String,
}

/// What an `@` modifier set: nothing, a timestamp, or `start()`/`end()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Unset,
    Timestamp,
    Preprocessor,
}

#[derive(Clone, Debug)]
pub enum Node {
    Number {
        start: usize,
        end: usize,
    },
    Str {
        start: usize,
        end: usize,
    },
    Vector {
        start: usize,
        end: usize,
        name: Option<String>,
        matchers: Vec<Matcher>,
        offset: bool,
        at: At,
    },
    Matrix {
        vector: Box<Node>,
        end: usize,
    },
    Subquery {
        expr: Box<Node>,
        end: usize,
        offset: bool,
        at: At,
    },
    Paren {
        start: usize,
        end: usize,
        expr: Box<Node>,
    },
    Unary {
        start: usize,
        expr: Box<Node>,
    },
    Binary {
        lhs: Box<Node>,
        rhs: Box<Node>,
        op: Kind,
        return_bool: bool,
        on: bool,
        matching: Vec<String>,
        include: Vec<String>,
        /// `group_left` or `group_right` given.
        grouped: bool,
    },
    Call {
        start: usize,
        end: usize,
        name: String,
        args: Vec<Node>,
    },
    Aggregate {
        start: usize,
        end: usize,
        op: Kind,
        param: Option<Box<Node>>,
        expr: Option<Box<Node>>,
    },
}

impl Node {
    pub fn start(&self) -> usize {
        match self {
            Node::Number { start, .. }
            | Node::Str { start, .. }
            | Node::Vector { start, .. }
            | Node::Paren { start, .. }
            | Node::Unary { start, .. }
            | Node::Call { start, .. }
            | Node::Aggregate { start, .. } => *start,
            Node::Matrix { vector: e, .. } | Node::Subquery { expr: e, .. } => e.start(),
            Node::Binary { lhs, .. } => lhs.start(),
        }
    }

    pub fn end(&self) -> usize {
        match self {
            Node::Number { end, .. }
            | Node::Str { end, .. }
            | Node::Vector { end, .. }
            | Node::Matrix { end, .. }
            | Node::Subquery { end, .. }
            | Node::Paren { end, .. }
            | Node::Call { end, .. }
            | Node::Aggregate { end, .. } => *end,
            Node::Unary { expr, .. } => expr.end(),
            Node::Binary { rhs, .. } => rhs.end(),
        }
    }
}

/// A syntax error ended the parse; it is already in `errors`.
struct Stop;
type PResult<T> = Result<T, Stop>;

pub struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token<'a>>,
    lex_err: Option<LexError>,
    i: usize,
    pub errors: Vec<ParseErr>,
    ctx: Vec<(&'static str, &'static str)>,
    /// How deep the expression being read is nested (see `MAX_NESTING`).
    depth: usize,
}

/// The deepest expression Hearth accepts. Prometheus has no such limit (Go stacks
/// grow); Hearth's parser, planner and evaluator recurse on the tree, so a hostile
/// `((((...` must be refused before it reaches them.
pub const MAX_NESTING: usize = 500;

const DURATION_EXPECTED: &str = "number or duration";

impl<'a> Parser<'a> {
    pub fn new(input: &'a str, toks: Vec<Token<'a>>, lex_err: Option<LexError>) -> Self {
        Parser {
            input,
            toks,
            lex_err,
            i: 0,
            errors: Vec::new(),
            ctx: vec![("", "")],
            depth: 0,
        }
    }

    /// The whole query; `None` when an error stopped it (see `errors`).
    pub fn parse(&mut self) -> Option<Node> {
        match self.peek() {
            Ok(t) if t.kind == Kind::Eof => {
                self.error(0, "no expression found in input".into());
                return None;
            }
            Ok(_) => {}
            Err(Stop) => return None,
        }
        let expr = self.expr(0).ok()?;
        match self.peek() {
            Ok(t) if t.kind == Kind::Eof => Some(expr),
            Ok(_) => {
                self.unexpected();
                None
            }
            Err(Stop) => None,
        }
    }

    fn error(&mut self, pos: usize, message: String) {
        self.errors.push(ParseErr { pos, message });
    }

    /// The next token; past the last one lies the lexer's error, which ends the parse.
    fn peek(&mut self) -> PResult<Token<'a>> {
        if let Some(t) = self.toks.get(self.i) {
            return Ok(*t);
        }
        if let Some(e) = self.lex_err.take() {
            self.error(e.pos, e.message);
        }
        Err(Stop)
    }

    fn peek_kind(&mut self) -> PResult<Kind> {
        self.peek().map(|t| t.kind)
    }

    /// The token after the next, if the lexer got that far.
    fn peek2_kind(&self) -> Option<Kind> {
        self.toks.get(self.i + 1).map(|t| t.kind)
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.toks[self.i];
        self.i += 1;
        t
    }

    /// Prometheus' `unexpected(context, expected)` for the next token.
    fn unexpected(&mut self) -> Stop {
        let t = match self.peek() {
            Ok(t) => t,
            Err(stop) => return stop,
        };
        let (context, expected) = *self.ctx.last().expect("the top context is never popped");
        let mut msg = format!("unexpected {}", t.describe());
        if !context.is_empty() {
            msg.push_str(" in ");
            msg.push_str(context);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        self.error(t.pos, msg);
        Stop
    }

    fn expect(&mut self, kind: Kind) -> PResult<Token<'a>> {
        if self.peek_kind()? == kind {
            Ok(self.bump())
        } else {
            Err(self.unexpected())
        }
    }

    fn set_expected(&mut self, context: &'static str, expected: &'static str) {
        *self.ctx.last_mut().expect("context pushed") = (context, expected);
    }

    /// Binary expressions by precedence climbing; `min` is the lowest precedence taken.
    fn expr(&mut self, min: u8) -> PResult<Node> {
        self.depth += 1;
        let node = self.expr_nested(min);
        self.depth -= 1;
        node
    }

    fn too_deep(&mut self) -> Stop {
        let pos = self.peek().map_or(self.input.len(), |t| t.pos);
        self.error(
            pos,
            format!("expression nested too deeply: more than {MAX_NESTING} levels"),
        );
        Stop
    }

    fn expr_nested(&mut self, min: u8) -> PResult<Node> {
        if self.depth > MAX_NESTING {
            return Err(self.too_deep());
        }
        let mut lhs = self.unary()?;
        // A chain `a + b + c ...` nests to the left: each link is a level.
        let mut chain = 0;
        loop {
            let kind = self.peek_kind()?;
            let Some(prec) = binary_precedence(kind) else {
                break;
            };
            if prec < min {
                break;
            }
            chain += 1;
            if self.depth + chain > MAX_NESTING {
                return Err(self.too_deep());
            }
            self.bump();
            let mut return_bool = false;
            if self.peek_kind()? == Kind::Bool {
                self.bump();
                return_bool = true;
            }
            let (mut on, mut matching, mut include, mut grouped) =
                (false, Vec::new(), Vec::new(), false);
            if matches!(self.peek_kind()?, Kind::On | Kind::Ignoring) {
                on = self.bump().kind == Kind::On;
                matching = self.grouping_labels()?;
                if matches!(self.peek_kind()?, Kind::GroupLeft | Kind::GroupRight) {
                    self.bump();
                    grouped = true;
                    if self.peek_kind()? == Kind::LeftParen {
                        include = self.grouping_labels()?;
                    }
                }
            }
            // `^` is right-associative; everything else binds left.
            let next_min = if kind == Kind::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = Node::Binary {
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                op: kind,
                return_bool,
                on,
                matching,
                include,
                grouped,
            };
        }
        Ok(lhs)
    }

    /// A unary sign binds tighter than `*` and looser than `^`; a signed number is a
    /// number literal starting at the sign.
    fn unary(&mut self) -> PResult<Node> {
        let t = self.peek()?;
        if matches!(t.kind, Kind::Add | Kind::Sub) {
            self.bump();
            let operand = self.expr(POW_PRECEDENCE)?;
            return Ok(match operand {
                Node::Number { end, .. } => Node::Number { start: t.pos, end },
                other => Node::Unary {
                    start: t.pos,
                    expr: Box::new(other),
                },
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> PResult<Node> {
        let t = self.peek()?;
        match t.kind {
            Kind::Number => {
                self.bump();
                if let Some(msg) = number_error(t.text) {
                    self.error(t.pos, msg);
                }
                Ok(Node::Number {
                    start: t.pos,
                    end: t.end(),
                })
            }
            Kind::Duration => {
                self.bump();
                self.check_duration(&t);
                Ok(Node::Number {
                    start: t.pos,
                    end: t.end(),
                })
            }
            Kind::Str => {
                self.bump();
                Ok(Node::Str {
                    start: t.pos,
                    end: t.end(),
                })
            }
            Kind::LeftParen => {
                self.bump();
                let inner = self.expr(0)?;
                let close = self.expect(Kind::RightParen)?;
                Ok(Node::Paren {
                    start: t.pos,
                    end: close.end(),
                    expr: Box::new(inner),
                })
            }
            Kind::LeftBrace => self.vector_selector(None),
            Kind::Identifier if self.peek2_kind() == Some(Kind::LeftParen) => self.call(),
            k if k.is_aggregator()
                && matches!(
                    self.peek2_kind(),
                    Some(Kind::LeftParen | Kind::By | Kind::Without)
                ) =>
            {
                self.aggregate()
            }
            k if is_metric_identifier(k) => {
                self.bump();
                self.vector_selector(Some(t))
            }
            _ => Err(self.unexpected()),
        }
    }

    /// Range and subquery brackets, `offset` and `@` after an operand.
    fn postfix(&mut self, mut node: Node) -> PResult<Node> {
        // Each subquery bracket wraps the node once more.
        let mut wraps = 0;
        loop {
            match self.peek_kind()? {
                Kind::LeftBracket => {
                    wraps += 1;
                    if self.depth + wraps > MAX_NESTING {
                        return Err(self.too_deep());
                    }
                    node = self.brackets(node)?
                }
                Kind::Offset => node = self.offset(node)?,
                Kind::At => node = self.at(node)?,
                _ => return Ok(node),
            }
        }
    }

    fn brackets(&mut self, node: Node) -> PResult<Node> {
        let open = self.bump();
        self.ctx.push(("subquery selector", DURATION_EXPECTED));
        self.duration(true)?;
        self.set_expected("subquery or range", "\":\" or \"]\"");
        let next = self.peek()?;
        let result = match next.kind {
            Kind::RightBracket => {
                self.bump();
                let msg = match &node {
                    Node::Vector { offset: true, .. } => {
                        Some("no offset modifiers allowed before range")
                    }
                    Node::Vector {
                        at: At::Timestamp, ..
                    } => Some("no @ modifiers allowed before range"),
                    Node::Vector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(msg) = msg {
                    self.error(open.pos, msg.into());
                }
                Node::Matrix {
                    vector: Box::new(node),
                    end: next.end(),
                }
            }
            Kind::Colon => {
                self.bump();
                self.set_expected("subquery selector", "number or duration or \"]\"");
                if self.peek_kind()? != Kind::RightBracket {
                    self.duration(true)?;
                    self.set_expected("subquery selector", "\"]\"");
                }
                let close = self.expect(Kind::RightBracket)?;
                Node::Subquery {
                    expr: Box::new(node),
                    end: close.end(),
                    offset: false,
                    at: At::Unset,
                }
            }
            _ => return Err(self.unexpected()),
        };
        self.ctx.pop();
        Ok(result)
    }

    fn offset(&mut self, mut node: Node) -> PResult<Node> {
        self.bump();
        self.ctx.push(("offset", DURATION_EXPECTED));
        let (value, end) = self.duration(false)?;
        self.ctx.pop();
        let start = node.start();
        let already = match &mut node {
            Node::Vector { offset, end: e, .. } => {
                *e = end;
                Some(std::mem::replace(offset, *offset || value != 0.0))
            }
            Node::Matrix { vector, end: e } => {
                *e = end;
                match vector.as_mut() {
                    Node::Vector { offset, .. } => {
                        Some(std::mem::replace(offset, *offset || value != 0.0))
                    }
                    _ => {
                        self.error(start, "ranges only allowed for vector selectors".into());
                        None
                    }
                }
            }
            Node::Subquery { offset, end: e, .. } => {
                *e = end;
                Some(std::mem::replace(offset, *offset || value != 0.0))
            }
            _ => {
                self.error(
                    start,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery".into(),
                );
                None
            }
        };
        if already == Some(true) {
            self.error(start, "offset may not be set multiple times".into());
        }
        Ok(node)
    }

    fn at(&mut self, mut node: Node) -> PResult<Node> {
        self.bump();
        self.ctx.push(("@", "timestamp"));
        let (set, end) = match self.peek_kind()? {
            Kind::Start | Kind::End => {
                self.bump();
                self.expect(Kind::LeftParen)?;
                (At::Preprocessor, self.expect(Kind::RightParen)?.end())
            }
            kind => {
                let sign = if kind == Kind::Sub { -1.0 } else { 1.0 };
                if matches!(kind, Kind::Add | Kind::Sub) {
                    self.bump();
                }
                let (ts, end) = self.number()?;
                let ts = ts * sign;
                if !ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64 {
                    self.error(
                        node.start(),
                        format!("timestamp out of bounds for @ modifier: {}", go_float(ts)),
                    );
                }
                (At::Timestamp, end)
            }
        };
        self.ctx.pop();
        let start = node.start();
        let slot = match &mut node {
            Node::Vector { at, end: e, .. } | Node::Subquery { at, end: e, .. } => Some((at, e)),
            Node::Matrix { vector, end: e } => match vector.as_mut() {
                Node::Vector { at, .. } => Some((at, e)),
                _ => {
                    self.error(start, "ranges only allowed for vector selectors".into());
                    None
                }
            },
            _ => {
                self.error(
                    start,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery".into(),
                );
                None
            }
        };
        if let Some((at, e)) = slot {
            if *at != At::Unset {
                self.error(start, "@ <timestamp> may not be set multiple times".into());
            } else {
                *at = set;
                *e = end;
            }
        }
        Ok(node)
    }

    /// The grammar's `number`: a number or duration literal; its value in seconds and
    /// its end. Anything else is unexpected in the open context.
    fn number(&mut self) -> PResult<(f64, usize)> {
        let t = self.peek()?;
        let value = match t.kind {
            Kind::Number => {
                if let Some(msg) = number_error(t.text) {
                    self.error(t.pos, msg);
                }
                parse_number(t.text)
            }
            Kind::Duration => {
                self.check_duration(&t);
                hearth_core::duration::parse_duration(t.text).unwrap_or(0) as f64 / 1000.0
            }
            _ => return Err(self.unexpected()),
        };
        self.bump();
        Ok((value, t.end()))
    }

    /// A duration where Prometheus takes one: a number or duration literal, signed or
    /// not. Duration arithmetic is an experimental feature that Prometheus 3.5 rejects
    /// unless enabled, and so does Hearth. Returns the value in seconds and the end.
    fn duration(&mut self, positive: bool) -> PResult<(f64, usize)> {
        let t = self.peek()?;
        let mut sign = 1.0;
        if matches!(t.kind, Kind::Add | Kind::Sub) {
            self.bump();
            if t.kind == Kind::Sub {
                sign = -1.0;
            }
        }
        if self.peek_kind()? == Kind::LeftParen {
            self.bump();
            let inner = self.peek()?;
            self.error(
                inner.pos,
                "experimental duration expression is not enabled".into(),
            );
            return Err(Stop);
        }
        let (value, end) = self.number()?;
        let value = value * sign;
        // In brackets an operator continues a duration expression; after `offset` the
        // literal ends the modifier (`foo offset 1m + 2` is `(foo offset 1m) + 2`).
        if positive
            && matches!(
                self.peek_kind()?,
                Kind::Add | Kind::Sub | Kind::Mul | Kind::Div | Kind::Mod | Kind::Pow
            )
        {
            self.error(
                t.pos,
                "experimental duration expression is not enabled".into(),
            );
            return Err(Stop);
        }
        // Durations must fit Go's time.Duration; Prometheus then goes on with a zero
        // literal that has no position, hence the second error at 1:1.
        let (value, value_pos) = if value.abs() > MAX_DURATION_SECONDS {
            self.error(t.pos, "duration out of range".into());
            (0.0, 0)
        } else {
            (value, t.pos)
        };
        if positive && value <= 0.0 {
            self.error(value_pos, "duration must be greater than 0".into());
        }
        Ok((value, end))
    }

    fn check_duration(&mut self, t: &Token<'_>) {
        if let Err(msg) = hearth_core::duration::parse_duration(t.text) {
            self.error(t.pos, msg);
        }
    }

    fn call(&mut self) -> PResult<Node> {
        let name = self.bump();
        let (args, end) = self.call_body()?;
        let fname = name.text.to_string();
        if super::check::function(&fname).is_none() {
            self.error(
                name.pos,
                format!("unknown function with name {}", super::go_quote(&fname)),
            );
        }
        Ok(Node::Call {
            start: name.pos,
            end,
            name: fname,
            args,
        })
    }

    /// `( args )`; the opening parenthesis is next.
    fn call_body(&mut self) -> PResult<(Vec<Node>, usize)> {
        self.expect(Kind::LeftParen)?;
        let mut args = Vec::new();
        if self.peek_kind()? == Kind::RightParen {
            return Ok((args, self.bump().end()));
        }
        loop {
            args.push(self.expr(0)?);
            match self.peek_kind()? {
                Kind::Comma => {
                    let comma = self.bump();
                    if self.peek_kind()? == Kind::RightParen {
                        self.error(
                            comma.pos,
                            "trailing commas not allowed in function call args".into(),
                        );
                        return Ok((args, self.bump().end()));
                    }
                }
                Kind::RightParen => return Ok((args, self.bump().end())),
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn aggregate(&mut self) -> PResult<Node> {
        let op = self.bump();
        self.ctx.push(("aggregation", ""));
        let (args, end) = match self.peek_kind()? {
            Kind::By | Kind::Without => {
                self.bump();
                self.grouping_labels()?;
                self.call_body()?
            }
            Kind::LeftParen => {
                let body = self.call_body()?;
                if matches!(self.peek_kind()?, Kind::By | Kind::Without) {
                    self.bump();
                    self.grouping_labels()?;
                }
                body
            }
            _ => return Err(self.unexpected()),
        };
        self.ctx.pop();
        let with_param = matches!(
            op.kind,
            Kind::Topk
                | Kind::Bottomk
                | Kind::CountValues
                | Kind::Quantile
                | Kind::Limitk
                | Kind::LimitRatio
        );
        let want = if with_param { 2 } else { 1 };
        let mut node = Node::Aggregate {
            start: op.pos,
            end,
            op: op.kind,
            param: None,
            expr: None,
        };
        if args.is_empty() {
            self.error(
                op.pos,
                "no arguments for aggregate expression provided".into(),
            );
        } else if args.len() != want {
            self.error(
                op.pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            );
        } else if let Node::Aggregate { param, expr, .. } = &mut node {
            let mut args = args.into_iter();
            if with_param {
                *param = args.next().map(Box::new);
            }
            *expr = args.next().map(Box::new);
        }
        Ok(node)
    }

    /// `( label, ... )` after `by`, `without`, `on`, `ignoring`, `group_left` or
    /// `group_right` (already consumed).
    fn grouping_labels(&mut self) -> PResult<Vec<String>> {
        self.ctx.push(("grouping opts", "\"(\""));
        self.expect(Kind::LeftParen)?;
        self.set_expected("grouping opts", "label");
        let mut labels = Vec::new();
        if self.peek_kind()? != Kind::RightParen {
            loop {
                let t = self.peek()?;
                if t.kind == Kind::Str {
                    labels.push(unquote(t.text));
                } else if is_label_name(t.kind) {
                    labels.push(t.text.to_string());
                } else {
                    return Err(self.unexpected());
                }
                self.bump();
                self.set_expected("grouping opts", "\",\" or \")\"");
                match self.peek_kind()? {
                    Kind::Comma => {
                        self.bump();
                        self.set_expected("grouping opts", "label");
                        if self.peek_kind()? == Kind::RightParen {
                            break;
                        }
                    }
                    Kind::RightParen => break,
                    _ => return Err(self.unexpected()),
                }
            }
        }
        self.bump();
        self.ctx.pop();
        Ok(labels)
    }

    /// A vector selector: an optional metric name (already consumed) and `{...}`.
    fn vector_selector(&mut self, name: Option<Token<'a>>) -> PResult<Node> {
        let start = name.map_or_else(|| self.toks[self.i].pos, |t| t.pos);
        let mut end = name.map_or(start, |t| t.end());
        let mut matchers = Vec::new();
        if self.peek_kind()? == Kind::LeftBrace {
            self.bump();
            self.ctx.push(("label matching", "identifier or \"}\""));
            loop {
                let t = self.peek()?;
                match t.kind {
                    Kind::RightBrace => break,
                    Kind::Identifier | Kind::Str => {
                        self.bump();
                        let label = if t.kind == Kind::Str {
                            unquote(t.text)
                        } else {
                            t.text.to_string()
                        };
                        let op = self.peek()?;
                        if is_match_op(op.kind) {
                            self.bump();
                            self.set_expected("label matching", "string");
                            let value = self.expect(Kind::Str)?;
                            let value = unquote(value.text);
                            self.check_matcher(t.pos, op.kind, &value);
                            matchers.push(Matcher {
                                name: label,
                                op: op.kind,
                                value,
                            });
                        } else if t.kind == Kind::Str {
                            matchers.push(Matcher {
                                name: "__name__".into(),
                                op: Kind::Eql,
                                value: label,
                            });
                        } else {
                            self.set_expected("label matching", "label matching operator");
                            return Err(self.unexpected());
                        }
                    }
                    _ => return Err(self.unexpected()),
                }
                self.set_expected("label matching", "\",\" or \"}\"");
                match self.peek_kind()? {
                    Kind::Comma => {
                        self.bump();
                        self.set_expected("label matching", "identifier or \"}\"");
                    }
                    Kind::RightBrace => break,
                    _ => return Err(self.unexpected()),
                }
            }
            end = self.bump().end();
            self.ctx.pop();
        }
        Ok(Node::Vector {
            start,
            end,
            name: name.map(|t| t.text.to_string()),
            matchers,
            offset: false,
            at: At::Unset,
        })
    }

    fn check_matcher(&mut self, pos: usize, op: Kind, value: &str) {
        if matches!(op, Kind::EqlRegex | Kind::NeqRegex) {
            // Only the syntax is checked here (no automaton is built: the matcher that
            // evaluates compiles it once, later).
            if let Err(e) = regex_syntax::Parser::new().parse(&format!("^(?s:{value})$")) {
                let text = e.to_string();
                let detail = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(&text)
                    .to_string();
                self.error(pos, format!("error parsing regexp: {detail}"));
            }
        }
    }

    pub fn input(&self) -> &'a str {
        self.input
    }
}

const POW_PRECEDENCE: u8 = 6;

/// The largest duration Go's `time.Duration` holds, in seconds.
const MAX_DURATION_SECONDS: f64 = 9_223_372_036.854_775;

/// Go's `%f`.
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:.6}")
    }
}

fn binary_precedence(kind: Kind) -> Option<u8> {
    use Kind::*;
    Some(match kind {
        Lor => 1,
        Land | Lunless => 2,
        Eqlc | Neq | Lss | Lte | Gtr | Gte => 3,
        Add | Sub => 4,
        Mul | Div | Mod | Atan2 => 5,
        Pow => POW_PRECEDENCE,
        _ => return None,
    })
}

fn is_match_op(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Eql | Kind::Neq | Kind::EqlRegex | Kind::NeqRegex
    )
}

/// The grammar's `metric_identifier`: words that name a metric where an expression
/// starts (keywords such as `by` or `offset` included).
fn is_metric_identifier(kind: Kind) -> bool {
    use Kind::*;
    kind.is_aggregator()
        || matches!(
            kind,
            Identifier
                | MetricIdentifier
                | By
                | Without
                | Offset
                | Land
                | Lor
                | Lunless
                | Start
                | End
        )
}

/// The grammar's `maybe_label`: every word is a label name in grouping lists.
fn is_label_name(kind: Kind) -> bool {
    use Kind::*;
    is_metric_identifier(kind)
        || matches!(kind, Bool | GroupLeft | GroupRight | Ignoring | On | Atan2)
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseFloat`: enough to know the sign
/// and whether the value is zero.
fn parse_number(s: &str) -> f64 {
    let clean: String = s.chars().filter(|c| *c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).map_or(f64::NAN, |v| v as f64);
    }
    match lower.as_str() {
        "inf" | "+inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => lower.parse::<f64>().unwrap_or(f64::NAN),
    }
}

/// Prometheus reads a number with Go's `strconv.ParseInt(s, 0, 64)`, falling back to
/// `ParseFloat`; this is the error it records when both fail.
fn number_error(s: &str) -> Option<String> {
    if go_parse_int_ok(s) {
        return None;
    }
    let reason = if s.contains('_') {
        "invalid syntax"
    } else {
        match s.parse::<f64>() {
            Ok(v) if v.is_infinite() && !s.to_ascii_lowercase().contains("inf") => {
                "value out of range"
            }
            Ok(_) => return None,
            Err(_) => "invalid syntax",
        }
    };
    Some(format!(
        "error parsing number: strconv.ParseFloat: parsing {}: {reason}",
        super::go_quote(s)
    ))
}

/// Go's `ParseInt(s, 0, 64)` succeeds: base prefixes, a leading 0 for octal, and
/// underscores only between digits.
fn go_parse_int_ok(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let (base, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    // Go's underscoreOK: each underscore sits between digits (or after the prefix).
    let mut saw = if base == 10 { '^' } else { '0' };
    for c in digits.chars() {
        if c.is_ascii_digit() || (base == 16 && c.is_ascii_hexdigit()) {
            saw = '0';
        } else if c == '_' {
            if saw != '0' {
                return false;
            }
            saw = '_';
        } else {
            return false;
        }
    }
    if saw == '_' {
        return false;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    !clean.is_empty() && i64::from_str_radix(&clean, base).is_ok()
}

/// The value of a quoted PromQL string (Go's escapes; raw strings as they are).
pub fn unquote(s: &str) -> String {
    let mut chars = s.chars();
    let Some(quote) = chars.next() else {
        return String::new();
    };
    let body: Vec<char> = chars.collect();
    let body = &body[..body.len().saturating_sub(1)];
    if quote == '`' {
        return body.iter().collect();
    }
    let mut out = String::new();
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != '\\' || i >= body.len() {
            out.push(c);
            continue;
        }
        let e = body[i];
        i += 1;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' | '\'' | '"' => Some(e),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let (n, base) = match e {
            '0'..='7' => {
                i -= 1;
                (3, 8)
            }
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => {
                out.push(e);
                continue;
            }
        };
        let digits: String = body[i..(i + n).min(body.len())].iter().collect();
        i += n;
        if let Some(c) = u32::from_str_radix(&digits, base)
            .ok()
            .and_then(char::from_u32)
        {
            out.push(c);
        }
    }
    out
}
