//! Values flowing through the evaluator and the results it returns.

use hearth_core::{Labels, Sample};

/// One series evaluated at every step of the query; `None` where it has no value.
#[derive(Clone, Debug)]
pub struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
    /// With delayed name removal: the metric name is still in `labels` but goes away
    /// when the query finishes (Prometheus' `DropName`).
    pub drop_name: bool,
}

impl StepSeries {
    pub fn new(labels: Labels, values: Vec<Option<f64>>) -> StepSeries {
        StepSeries {
            labels,
            values,
            drop_name: false,
        }
    }
}

/// Raw samples of one series over a span (matrix selectors, subqueries).
#[derive(Clone, Debug)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A range-vector argument: per step the window is `(te - range, te]` where
/// `te = (at or t) - offset`.
#[derive(Clone, Debug)]
pub struct MatrixArg {
    /// Shared with the fetched data: a matrix selector never copies samples.
    pub series: std::sync::Arc<Vec<RangeSeries>>,
    pub range_ms: i64,
    pub offset_ms: i64,
    pub at_ms: Option<i64>,
}

/// An intermediate value, evaluated over all steps at once.
#[derive(Clone, Debug)]
pub enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<StepSeries>),
    Matrix(MatrixArg),
    String(String),
}

/// What a query returns, as the HTTP API serialises it.
#[derive(Clone, Debug)]
pub enum QueryValue {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    /// Instant vector: one sample per series at the evaluation time.
    Vector(Vec<(Labels, i64, f64)>),
    /// Range query result, or a range vector from an instant query.
    Matrix(Vec<RangeSeries>),
}
