//! The small languages inside a metric model: identifiers in SQL expressions, `{placeholders}`
//! in alert reasons (and the SQL that fills them in), and names of normalisation methods.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::spec::*;

pub(super) fn method_name(method: NormalizeMethod) -> &'static str {
    match method {
        NormalizeMethod::Zscore => "zscore",
        NormalizeMethod::PercentRank => "percent_rank",
        NormalizeMethod::MinMax => "min_max",
    }
}

pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A model or column name spliced into SQL: ASCII letters, digits and `_`, not starting with a
/// digit.
pub(super) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Column names an SQL expression refers to (words that are not keywords, functions or strings).
pub(super) fn identifiers(expression: &str) -> Vec<String> {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, expression).tokenize() else {
        return Vec::new();
    };
    let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let mut found = Vec::new();
    for (index, token) in significant.iter().enumerate() {
        if let Token::Word(word) = token {
            let is_function = matches!(significant.get(index + 1), Some(Token::LParen));
            let is_qualified = matches!(significant.get(index + 1), Some(Token::Period))
                || (index > 0 && matches!(significant.get(index - 1), Some(Token::Period)));
            if word.quote_style.is_none() && word.keyword == Keyword::NoKeyword && !is_function && !is_qualified {
                found.push(word.value.to_lowercase());
            }
        }
    }
    found
}

/// Why `expression` is not one SQL expression (a condition, a value), or `None` when it is:
/// what a spec gives as an expression is parsed before it is put in the generated SQL, so
/// nothing else can be spliced in with it. Expressions with Jinja are left to the compile step.
pub(super) fn expression_problem(expression: &str) -> Option<String> {
    if expression.contains("{{") || expression.contains("{%") {
        return None;
    }
    let dialect = GenericDialect {};
    // A comment would swallow what the generated SQL puts after the expression.
    let tokens = Tokenizer::new(&dialect, expression).tokenize().unwrap_or_default();
    if tokens.iter().any(|token| {
        matches!(
            token,
            Token::Whitespace(
                datafusion::sql::sqlparser::tokenizer::Whitespace::SingleLineComment { .. }
                    | datafusion::sql::sqlparser::tokenizer::Whitespace::MultiLineComment(_)
            )
        )
    }) {
        return Some("it holds an SQL comment (`--` or `/* */`), which would hide the SQL after it".into());
    }
    let mut parser = match datafusion::sql::sqlparser::parser::Parser::new(&dialect).try_with_sql(expression) {
        Ok(parser) => parser,
        Err(error) => return Some(error.to_string()),
    };
    match parser.parse_expr() {
        Err(error) => Some(error.to_string()),
        Ok(_) => match parser.peek_token().token {
            Token::EOF => None,
            other => Some(format!("it goes on after the expression, at '{other}'")),
        },
    }
}

/// `{column}` placeholders of a reason template.
pub(super) fn placeholders(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else { break };
        found.push(rest[start + 1..start + end].trim().to_string());
        rest = &rest[start + end + 1..];
    }
    found
}

/// Placeholder map for `reason` templates: column → SQL text of its value.
pub(super) fn reason_sql(template: &str, value_of: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else { break };
        if start > 0 {
            parts.push(sql_string(&rest[..start]));
        }
        let name = rest[start + 1..start + end].trim();
        parts.push(value_of.get(name).cloned().unwrap_or_else(|| sql_string(name)));
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        parts.push(sql_string(rest));
    }
    if parts.is_empty() {
        return "''".into();
    }
    parts.join(" || ")
}

pub(super) fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::super::calendar::{date_of, period_ends};
    use super::*;

    #[test]
    fn identifiers_skip_keywords_functions_strings_and_qualified_names() {
        assert_eq!(
            identifiers("coalesce(score_30d, 0) < 0.5 * team_median and verb = 'passed' and t.x > 1 and not gate_ok"),
            ["score_30d", "team_median", "verb", "gate_ok"]
        );
    }

    #[test]
    fn reason_templates_become_sql_concatenations() {
        let mut values = BTreeMap::new();
        values.insert("value".to_string(), "cast(value as varchar)".to_string());
        assert_eq!(placeholders("{value} below {threshold}"), ["value", "threshold"]);
        assert_eq!(
            reason_sql("it's {value}!", &values),
            "'it''s ' || cast(value as varchar) || '!'"
        );
    }

    #[test]
    fn weekly_and_monthly_period_ends() {
        let weekly = PeriodsSpec {
            every: Some(Cadence::Week),
            start: Some("2026-01-04".into()),
            end: Some("2026-01-25".into()),
            as_of: None,
        };
        let ends: Vec<String> = period_ends(&weekly)
            .unwrap()
            .into_iter()
            .map(|d| date_of(d).to_string())
            .collect();
        assert_eq!(ends, ["2026-01-04", "2026-01-11", "2026-01-18", "2026-01-25"]);
        let monthly = PeriodsSpec {
            every: Some(Cadence::Month),
            start: Some("2026-01-31".into()),
            end: Some("2026-04-30".into()),
            as_of: None,
        };
        let ends: Vec<String> = period_ends(&monthly)
            .unwrap()
            .into_iter()
            .map(|d| date_of(d).to_string())
            .collect();
        assert_eq!(ends, ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]);
        let backwards = PeriodsSpec {
            every: Some(Cadence::Day),
            start: Some("2026-02-01".into()),
            end: Some("2026-01-01".into()),
            as_of: None,
        };
        assert!(period_ends(&backwards).unwrap_err().message.contains("before start"));
    }
}
