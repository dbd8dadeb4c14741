//! PromQL's lexer as Prometheus 3.5's `lex.go` defines it: the same tokens, the same
//! brace and bracket modes, the same error texts and the same error positions (the
//! start of the token being scanned when the error is found).

use super::{go_quote, go_quote_rune};

/// What a token is. The groups (operators, aggregators, keywords) decide how Prometheus
/// describes a token in an error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Eof,
    Comma,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Colon,
    Eql,
    Number,
    Duration,
    Str,
    Identifier,
    MetricIdentifier,
    // Operators.
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eqlc,
    Neq,
    Lss,
    Lte,
    Gtr,
    Gte,
    EqlRegex,
    NeqRegex,
    Land,
    Lor,
    Lunless,
    Atan2,
    At,
    // Aggregators.
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
    // Keywords.
    Offset,
    By,
    Without,
    On,
    Ignoring,
    GroupLeft,
    GroupRight,
    Bool,
    // Preprocessors.
    Start,
    End,
}

impl Kind {
    pub fn is_operator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Add | Sub
                | Mul
                | Div
                | Mod
                | Pow
                | Eqlc
                | Neq
                | Lss
                | Lte
                | Gtr
                | Gte
                | EqlRegex
                | NeqRegex
                | Land
                | Lor
                | Lunless
                | Atan2
                | At
        )
    }

    pub fn is_aggregator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Sum | Avg
                | Count
                | Min
                | Max
                | Group
                | Stddev
                | Stdvar
                | Topk
                | Bottomk
                | CountValues
                | Quantile
                | Limitk
                | LimitRatio
        )
    }

    pub fn is_keyword(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Offset | By | Without | On | Ignoring | GroupLeft | GroupRight | Bool
        )
    }

    /// Kinds with a fixed spelling, which Prometheus names by that spelling alone.
    fn has_fixed_spelling(self) -> bool {
        use Kind::*;
        !matches!(
            self,
            Eof | Number | Duration | Str | Identifier | MetricIdentifier
        )
    }

    /// The name of an aggregator or keyword as Prometheus prints it (`%q` of the type).
    pub fn spelling(self) -> &'static str {
        use Kind::*;
        match self {
            Comma => ",",
            LeftParen => "(",
            RightParen => ")",
            LeftBrace => "{",
            RightBrace => "}",
            LeftBracket => "[",
            RightBracket => "]",
            Colon => ":",
            Eql => "=",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            Pow => "^",
            Eqlc => "==",
            Neq => "!=",
            Lss => "<",
            Lte => "<=",
            Gtr => ">",
            Gte => ">=",
            EqlRegex => "=~",
            NeqRegex => "!~",
            Land => "and",
            Lor => "or",
            Lunless => "unless",
            Atan2 => "atan2",
            At => "@",
            Sum => "sum",
            Avg => "avg",
            Count => "count",
            Min => "min",
            Max => "max",
            Group => "group",
            Stddev => "stddev",
            Stdvar => "stdvar",
            Topk => "topk",
            Bottomk => "bottomk",
            CountValues => "count_values",
            Quantile => "quantile",
            Limitk => "limitk",
            LimitRatio => "limit_ratio",
            Offset => "offset",
            By => "by",
            Without => "without",
            On => "on",
            Ignoring => "ignoring",
            GroupLeft => "group_left",
            GroupRight => "group_right",
            Bool => "bool",
            Start => "start",
            End => "end",
            Eof => "EOF",
            Number => "number",
            Duration => "duration",
            Str => "string",
            Identifier => "identifier",
            MetricIdentifier => "metric identifier",
        }
    }
}

fn keyword(word: &str) -> Option<Kind> {
    use Kind::*;
    Some(match word.to_ascii_lowercase().as_str() {
        "and" => Land,
        "or" => Lor,
        "unless" => Lunless,
        "atan2" => Atan2,
        "sum" => Sum,
        "avg" => Avg,
        "count" => Count,
        "min" => Min,
        "max" => Max,
        "group" => Group,
        "stddev" => Stddev,
        "stdvar" => Stdvar,
        "topk" => Topk,
        "bottomk" => Bottomk,
        "count_values" => CountValues,
        "quantile" => Quantile,
        "limitk" => Limitk,
        "limit_ratio" => LimitRatio,
        "offset" => Offset,
        "by" => By,
        "without" => Without,
        "on" => On,
        "ignoring" => Ignoring,
        "group_left" => GroupLeft,
        "group_right" => GroupRight,
        "bool" => Bool,
        "start" => Start,
        "end" => End,
        "inf" | "nan" => Number,
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    /// Byte offset of the first character.
    pub pos: usize,
    pub text: &'a str,
}

impl Token<'_> {
    pub fn end(&self) -> usize {
        self.pos + self.text.len()
    }

    /// Prometheus' `Item.String()`.
    fn item_string(&self) -> String {
        if self.kind == Kind::Eof {
            "EOF".into()
        } else if matches!(self.kind, Kind::Identifier | Kind::MetricIdentifier) {
            go_quote(self.text)
        } else if self.kind.is_keyword() {
            format!("<{}>", self.text)
        } else if self.kind.is_operator() {
            format!("<op:{}>", self.text)
        } else if self.kind.is_aggregator() {
            format!("<aggr:{}>", self.text)
        } else if self.text.chars().count() > 10 {
            let head: String = self.text.chars().take(10).collect();
            format!("{}...", go_quote(&head))
        } else {
            go_quote(self.text)
        }
    }

    /// Prometheus' `Item.desc()`: how an unexpected token is named in an error.
    pub fn describe(&self) -> String {
        if self.kind.has_fixed_spelling() {
            self.item_string()
        } else if self.kind == Kind::Eof {
            "end of input".into()
        } else {
            format!("{} {}", self.kind.spelling(), self.item_string())
        }
    }
}

/// A lexer error: Prometheus reports it at the start of the token being scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub pos: usize,
    pub message: String,
}

/// Splits the whole query into tokens (comments dropped, `Eof` last) or stops at the
/// first lexer error, returning the tokens before it too.
pub fn tokenize(input: &str) -> (Vec<Token<'_>>, Option<LexError>) {
    let mut lx = Lexer {
        input,
        pos: 0,
        start: 0,
        paren_depth: 0,
        brace_open: false,
        bracket_open: false,
        got_colon: false,
        got_duration: false,
        duration_mode: false,
        tokens: Vec::new(),
    };
    let err = lx.run().err();
    (lx.tokens, err)
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    /// Just after `[` (and after `:` there): Prometheus' `lexDurationExpr` state.
    duration_mode: bool,
    tokens: Vec<Token<'a>>,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}
fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}
fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

type Step = Result<(), LexError>;

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }
    fn emit(&mut self, kind: Kind) {
        self.tokens.push(Token {
            kind,
            pos: self.start,
            text: &self.input[self.start..self.pos],
        });
        self.start = self.pos;
    }
    fn ignore(&mut self) {
        self.start = self.pos;
    }
    /// An error found right after emitting a token: Prometheus' error item replaces
    /// that token, so the parser never sees it.
    fn error_after_emit(&mut self, message: String) -> Step {
        self.tokens.pop();
        self.error(message)
    }

    fn error(&self, message: String) -> Step {
        Err(LexError {
            pos: self.start,
            message,
        })
    }

    fn run(&mut self) -> Step {
        loop {
            if self.brace_open {
                self.inside_braces()?;
            } else if self.duration_mode {
                self.duration_expr()?;
            } else if self.statements()? {
                return Ok(());
            }
        }
    }

    fn skip_comment(&mut self) -> bool {
        if self.input[self.pos..].starts_with('#') {
            while let Some(c) = self.peek() {
                if c == '\n' || c == '\r' {
                    break;
                }
                self.pos += c.len_utf8();
            }
            self.ignore();
            true
        } else {
            false
        }
    }

    /// One step of `lexStatements`; `Ok(true)` at the end of the input.
    fn statements(&mut self) -> Result<bool, LexError> {
        if self.skip_comment() {
            return Ok(false);
        }
        let Some(r) = self.next() else {
            if self.paren_depth != 0 {
                self.error("unclosed left parenthesis".into())?;
            } else if self.bracket_open {
                self.error("unclosed left bracket".into())?;
            }
            self.emit(Kind::Eof);
            return Ok(true);
        };
        match r {
            ',' => self.emit(Kind::Comma),
            c if is_space(c) => self.spaces(),
            '*' => self.emit(Kind::Mul),
            '/' => self.emit(Kind::Div),
            '%' => self.emit(Kind::Mod),
            '+' => self.emit(Kind::Add),
            '-' => self.emit(Kind::Sub),
            '^' => self.emit(Kind::Pow),
            '=' => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Kind::Eqlc)
                }
                Some('~') => self.error("unexpected character after '=': '~'".into())?,
                _ => self.emit(Kind::Eql),
            },
            '!' => match self.next() {
                Some('=') => self.emit(Kind::Neq),
                t => self.error(format!(
                    "unexpected character after '!': {}",
                    go_quote_rune(t)
                ))?,
            },
            '<' => {
                let kind = if self.accept("=") {
                    Kind::Lte
                } else {
                    Kind::Lss
                };
                self.emit(kind)
            }
            '>' => {
                let kind = if self.accept("=") {
                    Kind::Gte
                } else {
                    Kind::Gtr
                };
                self.emit(kind)
            }
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.pos = self.start;
                self.number_or_duration()?
            }
            '"' | '\'' => self.string(r)?,
            '`' => self.raw_string()?,
            c if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.pos = self.start;
                    self.keyword_or_identifier();
                } else {
                    // Inside brackets Prometheus 3.5 takes any word character for the
                    // subquery colon.
                    if self.got_colon {
                        self.error(format!("unexpected colon {}", go_quote_rune(Some(c))))?;
                    }
                    self.emit(Kind::Colon);
                    self.got_colon = true;
                }
            }
            '(' => self.left_paren(),
            ')' => self.right_paren()?,
            '{' => {
                self.emit(Kind::LeftBrace);
                self.brace_open = true;
            }
            '[' => {
                if self.bracket_open {
                    self.error("unexpected left bracket '['".into())?;
                }
                self.got_colon = false;
                self.emit(Kind::LeftBracket);
                while self.peek().is_some_and(is_space) {
                    self.next();
                }
                self.ignore();
                self.bracket_open = true;
                self.duration_mode = true;
            }
            ']' => {
                if !self.bracket_open {
                    self.error("unexpected right bracket ']'".into())?;
                }
                self.emit(Kind::RightBracket);
                self.bracket_open = false;
            }
            '@' => self.emit(Kind::At),
            c => self.error(format!("unexpected character: {}", go_quote_rune(Some(c))))?,
        }
        Ok(false)
    }

    fn left_paren(&mut self) {
        self.emit(Kind::LeftParen);
        self.paren_depth += 1;
    }

    fn right_paren(&mut self) -> Step {
        self.emit(Kind::RightParen);
        self.paren_depth -= 1;
        if self.paren_depth < 0 {
            return self.error_after_emit("unexpected right parenthesis ')'".into());
        }
        Ok(())
    }

    fn spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.next();
        }
        self.ignore();
    }

    /// `lexInsideBraces`: keywords are plain identifiers here.
    fn inside_braces(&mut self) -> Step {
        if self.skip_comment() {
            return Ok(());
        }
        let Some(r) = self.next() else {
            return self.error("unexpected end of input inside braces".into());
        };
        match r {
            c if is_space(c) => self.spaces(),
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alnum) {
                    self.next();
                }
                self.emit(Kind::Identifier);
            }
            ',' => self.emit(Kind::Comma),
            '"' | '\'' => self.string(r)?,
            '`' => self.raw_string()?,
            '=' => {
                let kind = if self.accept("~") {
                    Kind::EqlRegex
                } else {
                    Kind::Eql
                };
                self.emit(kind);
            }
            '!' => match self.next() {
                Some('~') => self.emit(Kind::NeqRegex),
                Some('=') => self.emit(Kind::Neq),
                t => {
                    return self.error(format!(
                        "unexpected character after '!' inside braces: {}",
                        go_quote_rune(t)
                    ))
                }
            },
            '{' => return self.error("unexpected left brace '{'".into()),
            '}' => {
                self.emit(Kind::RightBrace);
                self.brace_open = false;
            }
            c => {
                return self.error(format!(
                    "unexpected character inside braces: {}",
                    go_quote_rune(Some(c))
                ))
            }
        }
        Ok(())
    }

    /// `lexDurationExpr`: just after `[` or a `:` inside brackets.
    fn duration_expr(&mut self) -> Step {
        let Some(r) = self.next() else {
            return self.error("unexpected end of input in duration expression".into());
        };
        match r {
            ']' => {
                self.emit(Kind::RightBracket);
                self.bracket_open = false;
                self.got_colon = false;
                self.duration_mode = false;
            }
            ':' => {
                self.emit(Kind::Colon);
                if !self.got_duration {
                    return self.error_after_emit(
                        "unexpected colon before duration in duration expression".into(),
                    );
                }
                if self.got_colon {
                    return self.error_after_emit(
                        "unexpected repeated colon in duration expression".into(),
                    );
                }
                self.got_colon = true;
            }
            '(' => self.left_paren(),
            ')' => self.right_paren()?,
            c if is_space(c) => self.spaces(),
            '+' => self.emit(Kind::Add),
            '-' => self.emit(Kind::Sub),
            '*' => self.emit(Kind::Mul),
            '/' => self.emit(Kind::Div),
            '%' => self.emit(Kind::Mod),
            '^' => self.emit(Kind::Pow),
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.pos = self.start;
                self.got_duration = true;
                self.duration_mode = false;
                self.number_or_duration()?;
            }
            c => {
                return self.error(format!(
                    "unexpected character in duration expression: {}",
                    go_quote_rune(Some(c))
                ))
            }
        }
        Ok(())
    }

    fn keyword_or_identifier(&mut self) {
        while self.peek().is_some_and(|c| is_alnum(c) || c == ':') {
            self.next();
        }
        let word = &self.input[self.start..self.pos];
        let kind = match keyword(word) {
            Some(k) => k,
            None if word.contains(':') => Kind::MetricIdentifier,
            None => Kind::Identifier,
        };
        self.emit(kind);
    }

    fn number_or_duration(&mut self) -> Step {
        if self.scan_number() {
            self.emit(Kind::Number);
            return Ok(());
        }
        if self.remaining_duration() {
            self.emit(Kind::Duration);
            return Ok(());
        }
        self.error(format!(
            "bad number or duration syntax: {}",
            go_quote(&self.input[self.start..self.pos])
        ))
    }

    /// The unit part of a duration after its first number; leaves `pos` after it.
    fn remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        // Prometheus reads one more rune, then backs up only that rune.
        match self.peek() {
            Some(c) if is_alnum(c) => {
                self.next();
                false
            }
            _ => true,
        }
    }

    /// `scanNumber`: decimal, hex, float with exponent and digit-separating underscores.
    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        let is = |lx: &Self, set: &str| lx.peek().is_some_and(|c| set.contains(c));
        self.accept(".");
        self.accept(digits);
        let mut dot = false;
        let mut exp = false;
        while self
            .peek()
            .is_some_and(|c| digits.contains(c) || "._eE".contains(c))
        {
            if is(self, ".") && dot {
                self.accept(".");
                return false;
            }
            if is(self, "eE") && exp {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") || digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exp = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            while self.accept(digits) {}
        }
        if self.pos == initial {
            return false;
        }
        !self.peek().is_some_and(is_alnum)
    }

    /// `lexString`: the opening quote is already read.
    fn string(&mut self, quote: char) -> Step {
        loop {
            match self.next() {
                Some('\\') => self.escape(quote)?,
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".into()),
                None | Some('\n') => return self.error("unterminated quoted string".into()),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str);
        Ok(())
    }

    fn raw_string(&mut self) -> Step {
        loop {
            match self.next() {
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".into()),
                None => return self.error("unterminated raw string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str);
        Ok(())
    }

    /// `lexEscape`: the backslash is already read.
    fn escape(&mut self, quote: char) -> Step {
        let (mut n, base, max): (u32, u32, u32) = match self.next() {
            Some(c) if "abfnrtv\\".contains(c) || c == quote => return Ok(()),
            Some('0'..='7') => {
                self.pos -= 1;
                (3, 8, 255)
            }
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10FFFF),
            Some('U') => (8, 16, 0x10FFFF),
            None => return self.error("escape sequence not terminated".into()),
            Some(c) => {
                return self.error(format!("unknown escape sequence {}", go_unicode(c)));
            }
        };
        let mut x: u32 = 0;
        while n > 0 {
            let ch = self.next();
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                return match ch {
                    None => self.error("escape sequence not terminated".into()),
                    Some(c) => self.error(format!(
                        "illegal character {} in escape sequence",
                        go_unicode(c)
                    )),
                };
            }
            x = x.saturating_mul(base).saturating_add(d);
            n -= 1;
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return self.error("escape sequence is an invalid Unicode code point".into());
        }
        Ok(())
    }
}

/// Go's `%#U`: `U+0071 'q'`.
fn go_unicode(c: char) -> String {
    format!("U+{:04X} '{}'", c as u32, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<Kind> {
        let (t, e) = tokenize(q);
        assert_eq!(e, None, "{q}");
        t.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn modes_decide_what_a_word_is() {
        use Kind::*;
        assert_eq!(
            kinds("sum by (job) (rate(foo{by=\"x\"}[5m]))"),
            vec![
                Sum,
                By,
                LeftParen,
                Identifier,
                RightParen,
                LeftParen,
                Identifier,
                LeftParen,
                Identifier,
                LeftBrace,
                Identifier,
                Eql,
                Str,
                RightBrace,
                LeftBracket,
                Duration,
                RightBracket,
                RightParen,
                RightParen,
                Eof
            ]
        );
        assert_eq!(
            kinds("a:b offset 1m @ start()"),
            vec![
                MetricIdentifier,
                Offset,
                Duration,
                At,
                Start,
                LeftParen,
                RightParen,
                Eof
            ]
        );
        assert_eq!(
            kinds("0x1F + 1e3 - Inf # c"),
            vec![Number, Add, Number, Sub, Number, Eof]
        );
        assert_eq!(
            kinds("foo[1h:5m]"),
            vec![
                Identifier,
                LeftBracket,
                Duration,
                Colon,
                Duration,
                RightBracket,
                Eof
            ]
        );
    }

    #[test]
    fn errors_carry_the_token_start() {
        let err = |q: &str| tokenize(q).1.unwrap();
        assert_eq!(err("foo $").pos, 4);
        assert_eq!(err("foo{a=\"b").pos, 6);
        assert_eq!(err("foo{a=\"b").message, "unterminated quoted string");
        assert_eq!(err("foo)").pos, 4);
        assert_eq!(
            err("foo[5x]").message,
            "bad number or duration syntax: \"5\""
        );
        assert_eq!(err("foo[1m:5m:2m]").pos, 9);
        assert_eq!(err("sum(").message, "unclosed left parenthesis");
        assert_eq!(err("\"\\q\"").message, "unknown escape sequence U+0071 'q'");
        assert_eq!(
            err("2.5.").message,
            "bad number or duration syntax: \"2.5.\""
        );
    }
}
