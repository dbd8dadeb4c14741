//! Parse errors against a real Prometheus 2.42 (Debian): the same malformed and
//! ill-typed queries go to both, and Hearth's `error` must be Prometheus' exactly,
//! `line:column` position included.
//!
//! Hearth follows Prometheus 3.5, whose lexer was rewritten for duration expressions;
//! where 3.5 answers differently from 2.42 (read from 3.5's lex.go and
//! generated_parser.y), the query is checked against the 3.5 text in
//! `answers_where_prometheus_3_5_differs_from_2_42` instead.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Queries both versions answer alike.
const QUERIES: &[&str] = &[
    "sum(",
    "foo bar",
    "1 +",
    "foo{a=\"b",
    "foo{a=~}",
    "foo $",
    "rate(foo)",
    "rate(foo[5m]",
    "sum by foo (x)",
    "foo[5m] + 1",
    "foo @ bar",
    "(foo",
    "foo)",
    "1 + \"a\"",
    "sum(foo) by",
    "topk(foo, bar)",
    "label_replace(foo, 1, \"a\", \"b\", \"c\")",
    "abs(foo, bar)",
    "foo{}",
    "{}",
    "foo[5m][1m]",
    "foo and 1",
    "unknown_fn(foo)",
    "foo{a=\"b\",,}",
    "-\"a\"",
    "foo[1m:5m:2m]",
    "count_values(1, foo)",
    "foo == bool bar",
    "1 == bool 2 3",
    "sum without() (x",
    "sum foo",
    "sum 1",
    "sum + 1",
    "sum",
    "sum{a=\"b\"}",
    "sum(foo) bar",
    "sum by (a b) (x)",
    "sum by (a,,) (x)",
    "sum by (1) (x)",
    "sum(foo) by (",
    "sum(foo,)",
    "rate(foo[5m],)",
    "rate(foo[5m] bar)",
    "sum(rate(foo[5m] bar))",
    "foo offset 5m offset 1m",
    "foo offset -5m",
    "(foo) offset 5m",
    "rate(foo[5m]) offset 1m",
    "foo @ 100 @ 200",
    "foo @ start",
    "foo @ start(",
    "foo @ -",
    "(foo) @ 5",
    "foo[5m",
    "foo[5m:",
    "foo[5m:1m",
    "foo[5m:1m:]",
    "foo[5m 1m]",
    "foo[0s]",
    "foo[5m:0s]",
    "foo[5m] offset 5m [5m]",
    "foo offset 5m[5m]",
    "foo @ 5 [5m]",
    "foo{a=\"b\"}[5m] + 1",
    "foo{a}",
    "foo{a=}",
    "foo{=\"b\"}",
    "foo{a=\"b\" c=\"d\"}",
    "foo{a!b}",
    "foo{a=\"b\"",
    "foo{__name__=\"bar\"}",
    "{a=\"\"}",
    "{a=~\".*\"}",
    "{a!=\"x\"}",
    "1 == 1",
    "1 == bool 1 ==",
    "foo + bool bar",
    "foo and on(a) group_left bar",
    "foo * on(a) group_left(a) bar",
    "1 + on(a) foo",
    "foo + on(a) 1",
    "foo and",
    "foo * group_left bar",
    "foo * on(a) bool bar",
    "\"a\" + 1",
    "-foo[5m]",
    "-(foo[5m])",
    "(foo[5m])",
    "sum(foo[5m])",
    "sum(1)",
    "topk(foo)",
    "topk(1, 2, foo)",
    "quantile(\"a\", foo)",
    "count_values(foo, bar)",
    "sum()",
    "abs()",
    "round(foo, 1, 2)",
    "label_join(foo)",
    "day_of_week(foo, bar)",
    "vector(foo)",
    "scalar(1)",
    "time(1)",
    "histogram_quantile(foo, bar)",
    "absent_over_time(foo)",
    "rate(\"a\")",
    "rate(1)",
    "rate(foo[5m:])",
    "rate(foo[5m:1m:])",
    "max_over_time(sum(foo)[5m:])",
    "max_over_time(sum(foo)[5m])",
    "sum(foo)[5m:1m] offset 1m",
    "1[5m:1m]",
    "\"foo\"[5m:]",
    "foo[5m][5m:1m]",
    "foo ^ ^ bar",
    "foo == == bar",
    "foo ! bar",
    "foo =~ bar",
    "foo = bar",
    "foo # comment",
    "# only comment",
    "a:b:c{}",
    "a:b:c",
    "foo bar baz",
    "((foo)",
    "foo))",
    "[5m]",
    "]",
    "foo]",
    "foo{",
    "foo}",
    "foo{}}",
    "1 + $",
    "0x",
    "08",
    "0x1g",
    "1m1",
    "5mx",
    "\"abc",
    "'abc",
    "`abc",
    "\"\\q\"",
    "\"\\x4\"",
    "\"\\u12\"",
    "foo{a=\"\\z\"}",
    "foo bool",
    "foo offset 5m bar",
    "foo offset 5x",
    "sum by (job) (foo) by (instance)",
    "sum (foo) without (a) (b)",
    "max_over_time(foo[5m]) by (a)",
    "foo @ end() offset 5m offset 1m",
    "foo unless on() bar",
    "foo and ignoring(a) group_right bar",
    "foo or bool bar",
    "foo atan2 bar",
    "foo atan2 bool bar",
    "1 > 2",
    "foo > bool 1 > 2",
    "label_replace(foo, \"a\", \"b\", \"c\")",
];

/// (query, Prometheus 3.5's answer): what 3.5 changed since 2.42.
const CHANGED_IN_3_5: &[(&str, &str)] = &[
    ("foo offset", "1:11: parse error: unexpected end of input in offset, expected number or duration"),
    ("foo offset bar", "1:12: parse error: unexpected identifier \"bar\" in offset, expected number or duration"),
    ("foo[]", "1:5: parse error: unexpected \"]\" in subquery selector, expected number or duration"),
    ("foo[bar]", "1:5: parse error: unexpected character in duration expression: 'b'"),
    ("foo[-5m]", "1:5: parse error: duration must be greater than 0"),
    ("foo[5x]", "1:5: parse error: bad number or duration syntax: \"5\""),
    ("foo[5m1]", "1:5: parse error: bad number or duration syntax: \"5m1\""),
    ("1e", "1:1: parse error: bad number or duration syntax: \"1e\""),
    ("1.2.3", "1:1: parse error: bad number or duration syntax: \"1.2.\""),
    ("1__0", "1:1: parse error: bad number or duration syntax: \"1__\""),
    // 3.5's duration parser (prometheus/common 0.65) reads units itself.
    ("foo offset 1.5h", "1:12: parse error: unknown unit \".\" in duration \"1.5h\""),
    ("foo[5m1h]", "1:5: parse error: not a valid duration string: \"5m1h\"\n1:5: parse error: duration must be greater than 0"),
    ("foo @ +Inf", "1:1: parse error: timestamp out of bounds for @ modifier: +Inf"),
    ("start()", "1:6: parse error: unexpected \"(\""),
    ("foo[5m+1m]", "1:5: parse error: experimental duration expression is not enabled"),
];

async fn error_of(client: &reqwest::Client, base: &str, q: &str) -> String {
    let url = format!("{base}/api/v1/query?query={}&time=1000", urlencode(q));
    let resp = client.get(&url).send().await.expect("query");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    match body["error"].as_str() {
        Some(e) => {
            assert_eq!(status, 400, "{q}: {body}");
            assert_eq!(body["errorType"], "bad_data", "{q}: {body}");
            e.trim_start_matches("invalid parameter \"query\": ")
                .to_string()
        }
        None => "OK".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_errors_match_prometheus() {
    if !require_peer("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = start_hearth(&dir.path().join("hearth-data"), &[]).await;
    let (mut prom, pport) = start_prometheus(
        dir.path(),
        |_| "global:\n  scrape_interval: 1h\n".to_string(),
        &[],
    );
    let purl = format!("http://127.0.0.1:{pport}");
    wait_ready(&format!("{purl}/-/ready"), Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    let hurl = h.url("");
    let hurl = hurl.trim_end_matches('/');

    let mut mismatches = Vec::new();
    let mut errors = 0;
    for q in QUERIES {
        let want = error_of(&client, &purl, q).await;
        let got = error_of(&client, hurl, q).await;
        if want != "OK" {
            errors += 1;
        }
        if want != got {
            mismatches.push(format!("{q:?}\n  prometheus: {want}\n  hearth:     {got}"));
        }
    }
    // A bad regular expression: the position is Prometheus', the wording is the
    // regex engine's (Go's regexp and Rust's regex phrase it differently).
    let want = error_of(&client, &purl, "foo{a=~\"(\"}").await;
    let got = error_of(&client, hurl, "foo{a=~\"(\"}").await;
    let prefix = "1:5: parse error: error parsing regexp: ";
    assert!(
        want.starts_with(prefix) && got.starts_with(prefix),
        "{want} / {got}"
    );

    println!(
        "{} queries, {errors} rejected by Prometheus, {} mismatches",
        QUERIES.len(),
        mismatches.len()
    );
    assert!(errors > 130, "only {errors} of the queries are errors");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    prom.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_where_prometheus_3_5_differs_from_2_42() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hearth(&dir.path().join("hearth-data"), &[]).await;
    let client = reqwest::Client::new();
    let hurl = h.url("");
    let hurl = hurl.trim_end_matches('/');
    for (q, want) in CHANGED_IN_3_5 {
        assert_eq!(&error_of(&client, hurl, q).await, want, "{q}");
    }
}
