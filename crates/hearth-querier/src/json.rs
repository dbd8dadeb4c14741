//! JSON output in exactly the shapes Prometheus writes: timestamps as seconds with
//! millisecond fractions, sample values as strings (`"NaN"`, `"+Inf"`).

use std::fmt::Write;

use hearth_core::Labels;
use hearth_promql::{format_value, QueryValue};

pub fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings always serialise"));
}

/// Prometheus' `jsonutil.MarshalTimestamp`.
pub fn push_ts(out: &mut String, t: i64) {
    let mut t = t;
    if t < 0 {
        out.push('-');
        t = -t;
    }
    let _ = write!(out, "{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

pub fn push_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &lb.name);
        out.push(':');
        push_str(out, &lb.value);
    }
    out.push('}');
}

fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_ts(out, t);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// The `data` object of a query response.
pub fn query_data(v: &QueryValue) -> String {
    let mut out = String::with_capacity(256);
    match v {
        QueryValue::Scalar { t, v } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(&mut out, *t, *v);
        }
        QueryValue::String { t, v } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            push_ts(&mut out, *t);
            out.push(',');
            push_str(&mut out, v);
            out.push(']');
        }
        QueryValue::Vector(vs) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, (l, t, v)) in vs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, l);
                out.push_str(",\"value\":");
                push_point(&mut out, *t, *v);
                out.push('}');
            }
            out.push(']');
        }
        QueryValue::Matrix(ms) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in ms.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_point(&mut out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_like_prometheus() {
        let mut s = String::new();
        push_ts(&mut s, 1435781451781);
        assert_eq!(s, "1435781451.781");
        s.clear();
        push_ts(&mut s, 1500);
        assert_eq!(s, "1.500");
        s.clear();
        push_ts(&mut s, 1005);
        assert_eq!(s, "1.005");
        s.clear();
        push_ts(&mut s, 2000);
        assert_eq!(s, "2");
    }
}
