//! DuckDB's names and semantics, for projects coming from dbt-duckdb.
//!
//! Functions, in every session:
//!
//! | DuckDB function | here |
//! |---|---|
//! | `date_diff(part, start, end)`, `datediff` | the number of `part` boundaries between two dates or timestamps, as DuckDB counts them (below) |
//! | `date_add(date, interval)` | `cast(date as timestamp) + interval` |
//! | `strftime(timestamp, format)` | DataFusion's `to_char` (the same `%` codes) |
//! | `strptime(text, format)` | DataFusion's `to_timestamp` with a format |
//! | `regexp_extract(text, pattern[, group])` | the `group`th capture group of the first match (0: the whole match), `''` when nothing matches |
//! | `epoch(timestamp)` | seconds since 1970-01-01, a double |
//! | `string_split(text, separator)` | DataFusion's `string_to_array` |
//! | `arg_max(arg, value)`, `arg_min` | `max_by` / `min_by` (datafusion-extra-functions) |
//! | `list_value(...)` | DataFusion's `make_array`; the other `list_*` functions DuckDB has are DataFusion's own |
//!
//! `date_diff` counts boundaries: `year`, `quarter`, `month`, `decade`, `century` and
//! `millennium` compare calendar fields (`2024-12-31` to `2025-01-01` is one year); `day` and
//! finer units compare the instants truncated to the unit; `week` is whole days divided by 7,
//! rounded towards zero.
//!
//! With a target's `sql_dialect: duckdb`, [`IntegerDivision`] makes `/` between two integers
//! divide as doubles (`7 / 2` is 3.5), as DuckDB does. DuckDB's `//` ([`DuckOperators`], in
//! every session) is DataFusion's own `/`: integers divide truncating towards zero (`-7 // 2`
//! is -3), other numbers as they are.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    binary_expr, cast, lit, when, AggregateUDF, BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The scalar functions under DuckDB's names.
pub(super) fn scalar_functions() -> Vec<ScalarUDF> {
    let mut functions: Vec<ScalarUDF> = [
        Rewrite::DateAdd,
        Rewrite::Epoch,
        Rewrite::RegexpExtract,
        Rewrite::IntegerDivide,
    ]
    .into_iter()
    .map(|rewrite| ScalarUDF::new_from_impl(DuckFunction::new(rewrite)))
    .collect();
    functions.push(ScalarUDF::new_from_impl(DateDiff::new()));
    let alias =
        |function: Arc<ScalarUDF>, names: &[&'static str]| function.as_ref().clone().with_aliases(names.to_vec());
    functions.push(alias(datafusion::functions::datetime::to_char(), &["strftime"]));
    functions.push(alias(
        datafusion::functions::datetime::to_timestamp(&ConfigOptions::default()),
        &["strptime"],
    ));
    functions.push(alias(
        datafusion::functions_nested::string::string_to_array_udf(),
        &["string_split", "str_split"],
    ));
    functions.push(alias(
        datafusion::functions_nested::make_array::make_array_udf(),
        &["list_value", "list_pack"],
    ));
    functions
}

/// The aggregate functions under DuckDB's names.
pub(super) fn aggregate_functions() -> Vec<AggregateUDF> {
    use datafusion_extra_functions::max_min_by::{max_by_udaf, min_by_udaf};
    vec![
        max_by_udaf().as_ref().clone().with_aliases(["arg_max", "argmax"]),
        min_by_udaf().as_ref().clone().with_aliases(["arg_min", "argmin"]),
    ]
}

/// A DuckDB function that is a DataFusion expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rewrite {
    DateAdd,
    Epoch,
    RegexpExtract,
    /// `a // b`: planned as this function so that [`IntegerDivision`] leaves it alone, then
    /// simplified into DataFusion's `/`.
    IntegerDivide,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DuckFunction {
    rewrite: Rewrite,
    signature: Signature,
}

impl DuckFunction {
    fn new(rewrite: Rewrite) -> Self {
        let signature = match rewrite {
            Rewrite::DateAdd => Signature::any(2, Volatility::Immutable),
            Rewrite::Epoch => Signature::any(1, Volatility::Immutable),
            Rewrite::RegexpExtract => Signature::variadic_any(Volatility::Immutable),
            Rewrite::IntegerDivide => Signature::any(2, Volatility::Immutable),
        };
        DuckFunction { rewrite, signature }
    }
}

impl ScalarUDFImpl for DuckFunction {
    fn name(&self) -> &str {
        match self.rewrite {
            Rewrite::DateAdd => "date_add",
            Rewrite::Epoch => "epoch",
            Rewrite::RegexpExtract => "regexp_extract",
            Rewrite::IntegerDivide => "tidemark_integer_divide",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.rewrite {
            Rewrite::DateAdd => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Rewrite::Epoch => DataType::Float64,
            Rewrite::RegexpExtract => {
                if !(2..=3).contains(&arg_types.len()) {
                    return plan_err!("regexp_extract(text, pattern[, group]) takes 2 or 3 arguments");
                }
                DataType::Utf8
            }
            Rewrite::IntegerDivide => match arg_types {
                [left, right] => BinaryTypeCoercer::new(left, &Operator::Divide, right).get_result_type()?,
                _ => return plan_err!("// takes two operands"),
            },
        })
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        if self.rewrite == Rewrite::IntegerDivide {
            // Type coercion has run: cast both sides to the types `/` takes.
            let [left, right] = <[Expr; 2]>::try_from(args)
                .map_err(|_| datafusion::error::DataFusionError::Plan("// takes two operands".into()))?;
            let (left_type, right_type) = (info.get_data_type(&left)?, info.get_data_type(&right)?);
            let (left_input, right_input) =
                BinaryTypeCoercer::new(&left_type, &Operator::Divide, &right_type).get_input_types()?;
            return Ok(ExprSimplifyResult::Simplified(binary_expr(
                cast(left, left_input),
                Operator::Divide,
                cast(right, right_input),
            )));
        }
        let mut args = args.into_iter();
        let mut next = || args.next().unwrap_or(Expr::Literal(ScalarValue::Null, None));
        Ok(ExprSimplifyResult::Simplified(match self.rewrite {
            Rewrite::DateAdd => {
                let date = cast(next(), DataType::Timestamp(TimeUnit::Nanosecond, None));
                binary_expr(date, Operator::Plus, next())
            }
            Rewrite::Epoch => datafusion::functions::datetime::expr_fn::date_part(lit("epoch"), next()),
            Rewrite::RegexpExtract => {
                let (text, pattern) = (next(), next());
                let group = match next() {
                    Expr::Literal(ScalarValue::Null, _) => 0,
                    Expr::Literal(value, _) => match value.cast_to(&DataType::Int64)? {
                        ScalarValue::Int64(Some(group)) if group >= 0 => group,
                        _ => return plan_err!("regexp_extract: the group must be a whole number from 0"),
                    },
                    _ => return plan_err!("regexp_extract: the group must be a constant"),
                };
                // The pattern in one more group: element 1 is the whole match, 1 + g group g.
                let wrapped = datafusion::functions::string::expr_fn::concat(vec![lit("("), pattern.clone(), lit(")")]);
                let matched = datafusion::functions::regex::expr_fn::regexp_match(text.clone(), wrapped, None);
                let element = datafusion::functions_nested::expr_fn::array_element(matched, lit(group + 1));
                let found =
                    datafusion::functions::core::expr_fn::coalesce(vec![cast(element, DataType::Utf8), lit("")]);
                when(text.is_null().or(pattern.is_null()), lit(ScalarValue::Utf8(None))).otherwise(found)?
            }
            Rewrite::IntegerDivide => return plan_err!("// is simplified above"),
        }))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("{} is rewritten before it runs", self.name())
    }
}

/// `date_diff(part, start, end)`: see the module notes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateDiff {
    signature: Signature,
    aliases: Vec<String>,
}

impl DateDiff {
    fn new() -> Self {
        DateDiff {
            signature: Signature::any(3, Volatility::Immutable),
            aliases: vec!["datediff".into()],
        }
    }
}

/// A `date_diff` unit.
#[derive(Debug, Clone, Copy)]
enum Part {
    Calendar(fn(&NaiveDateTime) -> i64),
    /// Microseconds per unit.
    Fixed(i64),
    Week,
}

fn part(name: &str) -> Option<Part> {
    const SECOND: i64 = 1_000_000;
    let year = |t: &NaiveDateTime| i64::from(t.year());
    Some(match name.to_ascii_lowercase().as_str() {
        "year" | "years" | "y" | "yr" | "yrs" => Part::Calendar(year),
        "quarter" | "quarters" => Part::Calendar(|t| i64::from(t.year()) * 4 + i64::from(t.month0() / 3)),
        "month" | "months" | "mon" | "mons" => Part::Calendar(|t| i64::from(t.year()) * 12 + i64::from(t.month0())),
        "decade" | "decades" => Part::Calendar(|t| i64::from(t.year()).div_euclid(10)),
        "century" | "centuries" => Part::Calendar(|t| (i64::from(t.year()) - 1).div_euclid(100)),
        "millennium" | "millennia" | "mil" | "millenniums" => {
            Part::Calendar(|t| (i64::from(t.year()) - 1).div_euclid(1000))
        }
        "week" | "weeks" | "w" => Part::Week,
        "day" | "days" | "d" | "dayofmonth" | "dow" | "dayofweek" | "weekday" | "doy" | "dayofyear" => {
            Part::Fixed(86_400 * SECOND)
        }
        "hour" | "hours" | "h" | "hr" | "hrs" => Part::Fixed(3_600 * SECOND),
        "minute" | "minutes" | "min" | "mins" | "m" => Part::Fixed(60 * SECOND),
        "second" | "seconds" | "s" | "sec" | "secs" => Part::Fixed(SECOND),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => Part::Fixed(1_000),
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Part::Fixed(1),
        _ => return None,
    })
}

/// `part` boundaries from `start` to `end` (microseconds since 1970).
fn boundaries(part: Part, start: i64, end: i64) -> Option<i64> {
    const DAY: i64 = 86_400_000_000;
    Some(match part {
        Part::Fixed(unit) => end.div_euclid(unit) - start.div_euclid(unit),
        Part::Week => (end.div_euclid(DAY) - start.div_euclid(DAY)) / 7,
        Part::Calendar(field) => {
            let at = |micros: i64| DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc());
            field(&at(end)?) - field(&at(start)?)
        }
    })
}

impl ScalarUDFImpl for DateDiff {
    fn name(&self) -> &str {
        "date_diff"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [unit, start, end] = args.args.as_slice() else {
            return exec_err!("date_diff(part, start, end) takes 3 arguments");
        };
        let name = match unit {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(name)) | ScalarValue::LargeUtf8(Some(name)) | ScalarValue::Utf8View(Some(name)),
            ) => name.clone(),
            ColumnarValue::Scalar(value) if value.is_null() => {
                return Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)));
            }
            _ => return exec_err!("date_diff: the part must be a constant such as 'day'"),
        };
        let Some(part) = part(&name) else {
            return exec_err!(
                "date_diff: unknown part '{name}'; use year, quarter, month, week, day, hour, minute, second, millisecond, microsecond, decade, century or millennium"
            );
        };
        let micros = |value: &ColumnarValue| -> Result<ArrayRef> {
            let array = value.to_array(rows)?;
            Ok(datafusion::arrow::compute::cast(
                &array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?)
        };
        let (start, end) = (micros(start)?, micros(end)?);
        let (Some(start), Some(end)) = (
            start.as_any().downcast_ref::<TimestampMicrosecondArray>(),
            end.as_any().downcast_ref::<TimestampMicrosecondArray>(),
        ) else {
            return exec_err!("date_diff: start and end must be dates or timestamps");
        };
        let result: Int64Array = start
            .iter()
            .zip(end.iter())
            .map(|(start, end)| boundaries(part, start?, end?))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// `sql_dialect: duckdb`: `/` between two integers divides as doubles. Runs after DataFusion's
/// type coercion, so both sides already have their final types, and then coerces the plan
/// again, so what uses a quotient (`x / 2 * 2`) and every schema follow its new type.
#[derive(Debug, Default)]
pub struct IntegerDivision;

impl AnalyzerRule for IntegerDivision {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let rewritten = plan.transform_up_with_subqueries(|plan| {
            let schema = datafusion::logical_expr::utils::merge_schema(&plan.inputs());
            let schema = if plan.inputs().is_empty() {
                plan.schema().as_ref().clone()
            } else {
                schema
            };
            plan.map_expressions(|expression| {
                expression.transform_up(|expression| match expression {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Divide,
                        right,
                    }) if is_integer(&left, &schema) && is_integer(&right, &schema) => {
                        Ok(Transformed::yes(binary_expr(
                            cast(*left, DataType::Float64),
                            Operator::Divide,
                            cast(*right, DataType::Float64),
                        )))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })?;
        match rewritten.transformed {
            true => datafusion::optimizer::analyzer::type_coercion::TypeCoercion::new().analyze(rewritten.data, config),
            false => Ok(rewritten.data),
        }
    }

    fn name(&self) -> &str {
        "tidemark_duckdb_integer_division"
    }
}

/// Plans DuckDB's `//` operator (see the module notes).
#[derive(Debug, Default)]
pub struct DuckOperators;

impl ExprPlanner for DuckOperators {
    fn plan_binary_op(&self, expr: RawBinaryExpr, _schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        match expr.op {
            datafusion::sql::sqlparser::ast::BinaryOperator::DuckIntegerDivide => {
                let divide = ScalarUDF::new_from_impl(DuckFunction::new(Rewrite::IntegerDivide));
                Ok(PlannerResult::Planned(divide.call(vec![expr.left, expr.right])))
            }
            _ => Ok(PlannerResult::Original(expr)),
        }
    }
}

fn is_integer(expression: &Expr, schema: &DFSchema) -> bool {
    expression
        .get_type(schema)
        .is_ok_and(|data_type| data_type.is_integer())
}
