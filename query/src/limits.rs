//! What a query may take from the server, and all queries together.
//!
//! * **Memory.** Each query has a pool of its own ([`QueryPool`]) inside a pool of its caller's
//!   (half the server's, so one caller never takes all of it from the others) inside one pool
//!   shared by every query of the server: an operator that wants more than any is refused
//!   (`ResourcesExhausted`, a `limit_exceeded` error) instead of the server running out.
//! * **Functions that make big values from small ones** (`repeat('x', 1e10)`, `lpad(s, 1e10)`,
//!   `range(0, 1e12)`, …) allocate their output outside any pool. Every scalar function of a
//!   session is wrapped ([`bounded_functions`]): the functions that can make more than their
//!   input are checked against [`MAX_FUNCTION_OUTPUT`] before they run, from their arguments;
//!   every function's output is checked after it ran, so a chain of functions that each double
//!   their input stops too.
//! * **How many at once**: running queries, searches, traces and exports take a place
//!   ([`sluice_auth::slots::Slots`]): a few per caller, more in all.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, Int64Array},
        compute::{cast, kernels::length::length},
        datatypes::{DataType, FieldRef, IntervalMonthDayNanoType, TimeUnit},
    },
    common::{DataFusionError, ExprSchema, Result as DfResult},
    config::ConfigOptions,
    execution::memory_pool::{GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation},
    logical_expr::{
        ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
        ScalarUDFImpl, Signature, StructFieldMapping,
        interval_arithmetic::Interval,
        preimage::PreimageResult,
        simplify::{ExprSimplifyResult, SimplifyContext},
        sort_properties::{ExprProperties, SortProperties},
    },
};

/// The memory pool of one query: its own limit, inside the pools it shares with other queries
/// (those of its caller, then those of the whole server). Memory is taken from every level or
/// from none.
#[derive(Debug)]
pub struct QueryPool {
    local: GreedyMemoryPool,
    shared: Vec<Arc<GreedyMemoryPool>>,
    limit: usize,
}

impl QueryPool {
    /// A pool of `limit` bytes within each of `shared`, innermost first.
    pub fn new(limit: usize, shared: Vec<Arc<GreedyMemoryPool>>) -> Self {
        Self { local: GreedyMemoryPool::new(limit), shared, limit }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueryPool({} of {} bytes)", self.local.reserved(), self.limit)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "sluice query"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.local.grow(reservation, additional);
        for p in &self.shared {
            p.grow(reservation, additional);
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.local.shrink(reservation, shrink);
        for p in &self.shared {
            p.shrink(reservation, shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.local.try_grow(reservation, additional)?;
        for (i, p) in self.shared.iter().enumerate() {
            if let Err(e) = p.try_grow(reservation, additional) {
                self.local.shrink(reservation, additional);
                for taken in &self.shared[..i] {
                    taken.shrink(reservation, additional);
                }
                let whose = if i + 1 < self.shared.len() {
                    "this token's queries running at once use all the memory one token may have"
                } else {
                    "the queries running on this server use all the memory they may have together"
                };
                return Err(DataFusionError::ResourcesExhausted(format!("{whose} ({e}); retry later")));
            }
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.local.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// Most bytes one call of a scalar function may make for one batch.
pub const MAX_FUNCTION_OUTPUT: usize = 64 << 20;

/// Every scalar function of `functions`, bounded (see the module documentation).
pub fn bounded_functions<'a>(functions: impl IntoIterator<Item = &'a Arc<ScalarUDF>>) -> Vec<ScalarUDF> {
    functions
        .into_iter()
        .map(|f| ScalarUDF::new_from_impl(Bounded { udf: f.as_ref().clone(), limit: MAX_FUNCTION_OUTPUT }))
        .collect()
}

/// A scalar function whose output is bounded.
/// (Every method delegates to the function it wraps but `invoke_with_args`.)
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    udf: ScalarUDF,
    limit: usize,
}

impl Bounded {
    fn inner(&self) -> &dyn ScalarUDFImpl {
        self.udf.inner().as_ref()
    }

    fn too_big(&self, bytes: u128) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "{}(…) would make {} MiB for one batch of rows; the limit is {} MiB: ask for smaller values",
            self.udf.name(),
            bytes >> 20,
            self.limit >> 20
        ))
    }
}

/// The length in bytes of each value of a string or binary argument (a scalar: one value).
fn byte_lengths(v: &ColumnarValue) -> Option<Int64Array> {
    let a = v.to_array(1).ok()?;
    let lengths = length(&a).ok()?;
    Some(cast(&lengths, &DataType::Int64).ok()?.as_primitive().clone())
}

/// An integer argument (a scalar: one value).
fn integers(v: &ColumnarValue) -> Option<Int64Array> {
    let a = v.to_array(1).ok()?;
    Some(cast(&a, &DataType::Int64).ok()?.as_primitive().clone())
}

/// Value `i` of an argument of one value per row (or one value for all); null as 0, negative
/// as 0.
fn at(a: &Int64Array, i: usize) -> u128 {
    let j = if a.len() == 1 { 0 } else { i };
    if j >= a.len() || a.is_null(j) { 0 } else { a.value(j).max(0) as u128 }
}

/// Nanoseconds since the epoch of a date or timestamp argument.
fn instants(v: &ColumnarValue) -> Option<Int64Array> {
    let a = v.to_array(1).ok()?;
    let ns = cast(&a, &DataType::Timestamp(TimeUnit::Nanosecond, None)).ok()?;
    Some(cast(&ns, &DataType::Int64).ok()?.as_primitive().clone())
}

/// The smallest step of an interval argument in nanoseconds (a month counts 28 days), per row.
fn interval_steps(v: &ColumnarValue) -> Option<Vec<u128>> {
    let a: ArrayRef = v.to_array(1).ok()?;
    let a = cast(&a, &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)).ok()?;
    let a = a.as_primitive::<IntervalMonthDayNanoType>();
    Some(
        (0..a.len())
            .map(|i| {
                let v = a.value(i);
                let ns = i128::from(v.months) * 28 * 86_400_000_000_000
                    + i128::from(v.days) * 86_400_000_000_000
                    + i128::from(v.nanoseconds);
                ns.unsigned_abs()
            })
            .collect(),
    )
}

/// An upper bound of the bytes a function that can make more than its input would make for
/// `rows` rows; `None` for the others (and when the arguments cannot be read as expected:
/// the function reports those itself, and its output is still checked after it ran).
fn estimate(name: &str, args: &[ColumnarValue], rows: usize) -> Option<u128> {
    let rows = rows.max(1);
    let sum = |f: &dyn Fn(usize) -> u128| (0..rows).map(f).fold(0u128, u128::saturating_add);
    match name {
        "repeat" => {
            let (s, n) = (byte_lengths(args.first()?)?, integers(args.get(1)?)?);
            Some(sum(&|i| at(&s, i) * at(&n, i)))
        }
        // A character is at most four bytes.
        "lpad" | "rpad" => {
            let n = integers(args.get(1)?)?;
            Some(sum(&|i| at(&n, i) * 4))
        }
        "array_repeat" => {
            let n = integers(args.get(1)?)?;
            let element = byte_lengths(args.first()?);
            Some(sum(&|i| at(&n, i) * (16 + element.as_ref().map_or(0, |e| at(e, i)))))
        }
        "array_resize" => {
            let n = integers(args.get(1)?)?;
            Some(sum(&|i| at(&n, i) * 16))
        }
        "range" | "generate_series" => {
            let (start, stop) = (args.first()?, args.get(1)?);
            if start.data_type().is_integer() {
                let (a, b) = (integers(start)?, integers(stop)?);
                let step = match args.get(2) {
                    Some(s) => integers(s)?,
                    None => Int64Array::from(vec![1]),
                };
                let span = |i| {
                    let j = |x: &Int64Array| if x.len() == 1 { 0 } else { i };
                    let (x, y) = (a.value(j(&a)), b.value(j(&b)));
                    (i128::from(y) - i128::from(x)).unsigned_abs()
                };
                Some(sum(&|i| (span(i) / at(&step, i).max(1) + 1) * 8))
            } else {
                let (a, b) = (instants(start)?, instants(stop)?);
                let steps = interval_steps(args.get(2)?)?;
                Some(sum(&|i| {
                    let j = |len: usize| if len == 1 { 0 } else { i };
                    let span = (i128::from(b.value(j(b.len()))) - i128::from(a.value(j(a.len())))).unsigned_abs();
                    (span / steps[j(steps.len())].max(1) + 1) * 8
                }))
            }
        }
        // Every match of `from` (each position, for an empty one) becomes `to`.
        "replace" => {
            let (s, from, to) =
                (byte_lengths(args.first()?)?, byte_lengths(args.get(1)?)?, byte_lengths(args.get(2)?)?);
            Some(sum(&|i| at(&s, i) + (at(&s, i) / at(&from, i).max(1) + 1) * at(&to, i)))
        }
        "regexp_replace" => {
            let (s, to) = (byte_lengths(args.first()?)?, byte_lengths(args.get(2)?)?);
            Some(sum(&|i| at(&s, i) + (at(&s, i) + 1) * at(&to, i)))
        }
        _ => None,
    }
}

fn output_bytes(v: &ColumnarValue) -> usize {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner().name()
    }

    fn display_name(&self, args: &[Expr]) -> DfResult<String> {
        #[expect(deprecated, reason = "delegates every method")]
        self.inner().display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner().signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner().return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated, reason = "delegates every method")]
        self.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(bytes) = estimate(self.name(), &args.args, args.number_rows)
            && bytes > self.limit as u128
        {
            return Err(self.too_big(bytes));
        }
        let out = self.inner().invoke_with_args(args)?;
        let bytes = output_bytes(&out);
        if bytes > self.limit {
            return Err(self.too_big(bytes as u128));
        }
        Ok(out)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Self { udf: updated, limit: self.limit }))
    }

    fn aliases(&self) -> &[String] {
        self.inner().aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner().simplify(args, info)
    }

    fn preimage(&self, args: &[Expr], lit_expr: &Expr, info: &SimplifyContext) -> DfResult<PreimageResult> {
        self.inner().preimage(args, lit_expr, info)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<datafusion::common::ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner().struct_field_mapping(literal_args)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> DfResult<bool> {
        self.inner().strictly_order_preserving(inputs)
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner().placement(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner().short_circuits()
    }

    fn conditional_arguments<'a>(&self, args: &'a [Expr]) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner().conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> DfResult<Interval> {
        self.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(&self, interval: &Interval, inputs: &[&Interval]) -> DfResult<Option<Vec<Interval>>> {
        self.inner().propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> DfResult<SortProperties> {
        self.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> DfResult<bool> {
        self.inner().preserves_lex_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner().documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;

    use super::*;

    fn scalar(v: impl Into<ScalarValue>) -> ColumnarValue {
        ColumnarValue::Scalar(v.into())
    }

    #[test]
    fn a_query_takes_memory_from_every_level_or_none() {
        use datafusion::execution::memory_pool::MemoryConsumer;
        let server = Arc::new(GreedyMemoryPool::new(1000));
        let (caller_a, caller_b) = (Arc::new(GreedyMemoryPool::new(500)), Arc::new(GreedyMemoryPool::new(500)));
        let query = |caller: &Arc<GreedyMemoryPool>| -> Arc<dyn MemoryPool> {
            Arc::new(QueryPool::new(400, vec![Arc::clone(caller), Arc::clone(&server)]))
        };
        let (a1, a2, b1) = (query(&caller_a), query(&caller_a), query(&caller_b));
        let r1 = MemoryConsumer::new("a1").register(&a1);
        let r2 = MemoryConsumer::new("a2").register(&a2);
        let r3 = MemoryConsumer::new("b1").register(&b1);
        r1.try_grow(300).expect("within every limit");
        assert!(r1.try_grow(200).is_err(), "over the query's own limit");
        let e = r2.try_grow(300).expect_err("over the caller's half").to_string();
        assert!(e.contains("one token may have"), "{e}");
        assert_eq!((caller_a.reserved(), server.reserved()), (300, 300), "nothing taken by the refused grow");
        r3.try_grow(400).expect("another caller still has its half");
        r1.free();
        r2.try_grow(300).expect("freed memory comes back");
    }

    #[test]
    fn amplifying_functions_are_estimated_from_their_arguments() {
        let s = |t: &str| scalar(ScalarValue::Utf8(Some(t.into())));
        assert_eq!(estimate("repeat", &[s("ab"), scalar(1_000_000_000i64)], 1), Some(2_000_000_000));
        assert_eq!(estimate("lpad", &[s("a"), scalar(10i64)], 3), Some(120));
        assert_eq!(estimate("range", &[scalar(0i64), scalar(1_000_000_000_000i64)], 1), Some(8_000_000_000_008));
        assert_eq!(estimate("replace", &[s("aaaa"), s(""), s("xyz")], 1), Some(4 + 5 * 3));
        assert_eq!(estimate("upper", &[s("a")], 1), None);
        let strings = ColumnarValue::Array(Arc::new(datafusion::arrow::array::StringArray::from(vec!["a", "bcd"])));
        assert_eq!(estimate("repeat", &[strings, scalar(10i64)], 2), Some(40));
    }
}
