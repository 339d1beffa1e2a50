//! The VTQL subset vtiger understands:
//! `SELECT * | count(*) | col, ... FROM Module [WHERE cond {AND|OR cond}]
//!  [ORDER BY col [ASC|DESC], ...] [LIMIT n | LIMIT offset, n];`
//! with `= != < > <= >= LIKE IN`, no parentheses for grouping (AND binds tighter, as in SQL),
//! and a mandatory terminating semicolon.

#[derive(Debug, Clone, PartialEq)]
pub enum Columns {
    All,
    Count,
    Some(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
    In,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub op: Op,
    /// One value, or several for `IN`.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub columns: Columns,
    pub module: String,
    /// OR of AND-groups.
    pub filter: Vec<Vec<Condition>>,
    /// (column, descending)
    pub order: Vec<(String, bool)>,
    pub offset: usize,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Symbol(&'static str),
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Word(word) => word.clone(),
            Token::Text(text) => format!("'{text}'"),
            Token::Number(number) => number.clone(),
            Token::Symbol(symbol) => (*symbol).to_owned(),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(word) if word.eq_ignore_ascii_case(keyword))
    }
}

fn syntax(message: impl Into<String>) -> String {
    format!("Syntax Error on line 1: {}", message.into())
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Token::Number(chars[start..i].iter().collect()));
        } else if c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(syntax("unterminated string")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        value.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        value.push(*other);
                        i += 1;
                    }
                }
            }
            out.push(Token::Text(value));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(symbol) = symbol {
                out.push(Token::Symbol(symbol));
                i += 2;
                continue;
            }
            let symbol = match c {
                '*' => "*",
                ',' => ",",
                '(' => "(",
                ')' => ")",
                ';' => ";",
                '=' => "=",
                '<' => "<",
                '>' => ">",
                _ => return Err(syntax(format!("unexpected character '{c}'"))),
            };
            out.push(Token::Symbol(symbol));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| syntax("token '$' Unexpected end of query, expected ';'"))?;
        self.at += 1;
        Ok(token)
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), String> {
        let token = self.next()?;
        if token.is_keyword(keyword) {
            Ok(())
        } else {
            Err(syntax(format!(
                "token '{}' Unexpected, expected {keyword}",
                token.show()
            )))
        }
    }

    fn symbol(&mut self, symbol: &str) -> Result<(), String> {
        let token = self.next()?;
        if token
            == Token::Symbol(match symbol {
                "(" => "(",
                ")" => ")",
                "*" => "*",
                ";" => ";",
                _ => ",",
            })
        {
            Ok(())
        } else {
            Err(syntax(format!(
                "token '{}' Unexpected, expected {symbol}",
                token.show()
            )))
        }
    }

    fn accept_keyword(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|token| token.is_keyword(keyword)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn accept_symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(found)) if *found == symbol) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Word(word) => Ok(word),
            other => Err(syntax(format!(
                "token '{}' Unexpected, expected a column name",
                other.show()
            ))),
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Text(text) | Token::Number(text) => Ok(text),
            other => Err(syntax(format!(
                "token '{}' Unexpected, expected a value",
                other.show()
            ))),
        }
    }

    fn number(&mut self) -> Result<usize, String> {
        match self.next()? {
            Token::Number(number) => number
                .parse()
                .map_err(|_| syntax(format!("token '{number}' is not a valid limit"))),
            other => Err(syntax(format!(
                "token '{}' Unexpected, expected a number",
                other.show()
            ))),
        }
    }

    fn condition(&mut self) -> Result<Condition, String> {
        let column = self.name()?;
        let op = match self.next()? {
            Token::Symbol("=") => Op::Eq,
            Token::Symbol("!=") => Op::Ne,
            Token::Symbol("<") => Op::Lt,
            Token::Symbol(">") => Op::Gt,
            Token::Symbol("<=") => Op::Le,
            Token::Symbol(">=") => Op::Ge,
            token if token.is_keyword("LIKE") => Op::Like,
            token if token.is_keyword("IN") => Op::In,
            other => {
                return Err(syntax(format!(
                    "token '{}' Unexpected, expected an operator",
                    other.show()
                )))
            }
        };
        let values = if op == Op::In {
            self.symbol("(")?;
            let mut values = vec![self.value()?];
            while self.accept_symbol(",") {
                values.push(self.value()?);
            }
            self.symbol(")")?;
            values
        } else {
            vec![self.value()?]
        };
        Ok(Condition { column, op, values })
    }
}

pub fn parse(text: &str) -> Result<Query, String> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    parser.keyword("SELECT")?;
    let columns = if parser.accept_symbol("*") {
        Columns::All
    } else if parser.accept_keyword("count") {
        parser.symbol("(")?;
        parser.symbol("*")?;
        parser.symbol(")")?;
        Columns::Count
    } else {
        let mut names = vec![parser.name()?];
        while parser.accept_symbol(",") {
            names.push(parser.name()?);
        }
        Columns::Some(names)
    };
    parser.keyword("FROM")?;
    let module = parser.name()?;
    let mut filter = Vec::new();
    if parser.accept_keyword("WHERE") {
        let mut group = vec![parser.condition()?];
        loop {
            if parser.accept_keyword("AND") {
                group.push(parser.condition()?);
            } else if parser.accept_keyword("OR") {
                filter.push(std::mem::take(&mut group));
                group.push(parser.condition()?);
            } else {
                break;
            }
        }
        filter.push(group);
    }
    let mut order = Vec::new();
    if parser.accept_keyword("ORDER") {
        parser.keyword("BY")?;
        loop {
            let column = parser.name()?;
            let descending = if parser.accept_keyword("DESC") {
                true
            } else {
                parser.accept_keyword("ASC");
                false
            };
            order.push((column, descending));
            if !parser.accept_symbol(",") {
                break;
            }
        }
    }
    let (mut offset, mut limit) = (0, None);
    if parser.accept_keyword("LIMIT") {
        let first = parser.number()?;
        if parser.accept_symbol(",") {
            offset = first;
            limit = Some(parser.number()?);
        } else {
            limit = Some(first);
        }
    }
    parser.symbol(";")?;
    if let Some(extra) = parser.peek() {
        return Err(syntax(format!(
            "token '{}' Unexpected after ';'",
            extra.show()
        )));
    }
    Ok(Query {
        columns,
        module,
        filter,
        order,
        offset,
        limit,
    })
}

/// SQL `LIKE` with `%` and `_`, case-insensitive like MySQL's default collation.
pub fn like(value: &str, pattern: &str) -> bool {
    fn matches(value: &[char], pattern: &[char]) -> bool {
        match pattern.split_first() {
            None => value.is_empty(),
            Some(('%', rest)) => (0..=value.len()).any(|skip| matches(&value[skip..], rest)),
            Some(('_', rest)) => !value.is_empty() && matches(&value[1..], rest),
            Some((c, rest)) => value.first() == Some(c) && matches(&value[1..], rest),
        }
    }
    let value: Vec<char> = value.to_lowercase().chars().collect();
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    matches(&value, &pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fixture_queries() {
        let query = parse("SELECT id, subject, date_start FROM Events WHERE date_start >= '2026-12-01' ORDER BY date_start LIMIT 10;").unwrap();
        assert_eq!(
            query.columns,
            Columns::Some(vec!["id".into(), "subject".into(), "date_start".into()])
        );
        assert_eq!(query.module, "Events");
        assert_eq!(query.filter[0][0].op, Op::Ge);
        assert_eq!(query.order, vec![("date_start".to_owned(), false)]);
        assert_eq!(query.limit, Some(10));
        let query = parse("select * from Events where id = '18x3';").unwrap();
        assert_eq!(query.columns, Columns::All);
        assert_eq!(query.filter[0][0].values, vec!["18x3".to_owned()]);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let query = parse(
            "SELECT count(*) FROM Events WHERE a = 1 AND b = 2 OR c IN ('x', 'y') LIMIT 5, 20;",
        )
        .unwrap();
        assert_eq!(query.columns, Columns::Count);
        assert_eq!(query.filter.len(), 2);
        assert_eq!(query.filter[0].len(), 2);
        assert_eq!(query.filter[1][0].values.len(), 2);
        assert_eq!((query.offset, query.limit), (5, Some(20)));
    }

    #[test]
    fn needs_the_semicolon_and_doubles_quotes() {
        assert!(parse("SELECT * FROM Events")
            .unwrap_err()
            .starts_with("Syntax Error"));
        let query = parse("SELECT * FROM Users WHERE user_name = 'o''brien';").unwrap();
        assert_eq!(query.filter[0][0].values[0], "o'brien");
        assert!(parse("SELECT * FROM Events WHERE (a = 1);").is_err());
        assert!(parse("SELECT * FROM Events; DROP").is_err());
    }

    #[test]
    fn like_patterns() {
        assert!(like("Acceptance meeting", "%MEET%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
    }
}
