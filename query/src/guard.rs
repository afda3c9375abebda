//! The guard in front of the planner for SQL from strangers: the text's size, nesting and
//! operators are bounded before anything is parsed (planning recurses over the statement), and
//! of what parses, only one query statement passes, decided from the parsed statement.

use datafusion::sql::{
    parser::{DFParserBuilder, Statement as DfStatement},
    sqlparser::ast::Statement,
};

use crate::error::{Error, Rejection, Result};

/// Deepest recursion of the SQL parser (DataFusion's default is 50).
pub const PARSER_RECURSION: usize = 200;

/// Checks SQL text before it reaches the planner.
pub fn check_sql(sql: &str, max_bytes: usize) -> Result<()> {
    if sql.len() > max_bytes {
        return Err(Rejection::TooLong { bytes: sql.len(), limit: max_bytes }.into());
    }
    if sql.trim().trim_end_matches(';').trim().is_empty() {
        return Err(Rejection::Empty.into());
    }
    check_complexity(sql)
}

/// Deepest parenthesis nesting allowed.
pub const MAX_NESTING: usize = 64;
/// Most operators (arithmetic, comparison, `AND`, `OR`, `UNION`, `JOIN`, …) in one SQL text.
pub const MAX_OPERATORS: usize = 1000;

/// Refuses SQL whose plan would be so deep that planning or evaluating it could exhaust the
/// stack: the planner and the expression evaluator recurse once per nesting level and per operator
/// of a chain like `a + b + c + …`. Counted on tokens, before anything is parsed.
fn check_complexity(sql: &str) -> Result<()> {
    use datafusion::sql::sqlparser::{
        dialect::GenericDialect, keywords::Keyword, tokenizer::Token, tokenizer::Tokenizer,
    };
    // A text the tokenizer refuses is left to the parser, which reports it properly.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else { return Ok(()) };
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    for token in &tokens {
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            Token::Word(w)
                if matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                        | Keyword::JOIN
                        | Keyword::CASE
                        | Keyword::WHEN
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::BETWEEN
                        | Keyword::IS
                ) && w.quote_style.is_none() =>
            {
                operators += 1;
            }
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::DoubleColon
            | Token::Arrow
            | Token::LongArrow => operators += 1,
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(Rejection::TooDeep { depth: deepest, limit: MAX_NESTING }.into());
    }
    if operators > MAX_OPERATORS {
        return Err(Rejection::TooManyOperators { count: operators, limit: MAX_OPERATORS }.into());
    }
    Ok(())
}

/// The one query statement of `sql` (checked with [`check_sql`] first): anything else — DDL,
/// DML, `COPY`, `SET`, a transaction, several statements — is refused here, from the parsed
/// statement.
pub fn parse_query(sql: &str, max_bytes: usize) -> Result<DfStatement> {
    check_sql(sql, max_bytes)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_recursion_limit(PARSER_RECURSION)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| Error::Sql(Box::new(e)))?;
    if statements.len() != 1 {
        return Err(Rejection::Statements { count: statements.len() }.into());
    }
    let statement = statements.pop_front().expect("one statement");
    check_statement(&statement)?;
    Ok(statement)
}

/// Whether `statement` only reads: a query, or `EXPLAIN`, `SHOW` or `DESCRIBE` of what it may
/// read.
fn check_statement(statement: &DfStatement) -> Result<(), Rejection> {
    match statement {
        DfStatement::Statement(s) => check_sql_statement(s),
        DfStatement::Explain(e) => check_statement(&e.statement),
        other => Err(not_a_query(&other.to_string())),
    }
}

fn check_sql_statement(s: &Statement) -> Result<(), Rejection> {
    match s {
        Statement::Query(_)
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowFunctions { .. } => Ok(()),
        Statement::Explain { statement, .. } => check_sql_statement(statement),
        other => Err(not_a_query(&other.to_string())),
    }
}

/// The refusal of a statement, named by its first words.
fn not_a_query(text: &str) -> Rejection {
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    Rejection::NotAQuery { statement: words.join(" ").to_uppercase() }
}

/// The fuzz target `sql_guard` (`fuzz/`, [`sluice_schemas::fuzz`]): any text is refused by the
/// guard or parses within the parser's own limits (on a stack the size of a tokio worker's),
/// never overflowing the stack or panicking.
pub fn fuzz_sql_guard(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let sql = sql.to_owned();
    let parsed = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = parse_query(&sql, 64 * 1024);
        })
        .expect("thread")
        .join();
    assert!(parsed.is_ok(), "the guard or the parser panicked");
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_fuzz_inputs_of_the_sql_guard() {
        let inputs = sluice_schemas::fuzz::committed_inputs("sql_guard");
        assert!(inputs.len() >= 5, "the corpus of fuzz/corpus/sql_guard is missing");
        for (path, bytes) in inputs {
            assert!(
                std::panic::catch_unwind(|| super::fuzz_sql_guard(&bytes)).is_ok(),
                "{} breaks the SQL guard",
                path.display()
            );
        }
    }
}
