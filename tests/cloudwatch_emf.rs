//! The CloudWatch EMF example's tour, run here: six virtual minutes of Bedrock traffic through
//! the SDK adapter, written as Embedded Metric Format documents; every alarm in
//! `docs/cloudwatch/alarms.json` must query a metric the example emitted, with exactly the
//! dimensions it was emitted with (a Metrics Insights `SCHEMA` matches only that set).
#![cfg(all(feature = "sim", feature = "bedrock", feature = "metrics"))]

#[allow(dead_code)]
#[path = "../examples/cloudwatch_emf.rs"]
mod cloudwatch_emf;

use std::collections::BTreeSet;

/// A metric as CloudWatch knows it: namespace, name, dimension names.
type Series = (String, String, BTreeSet<String>);

fn emitted(emf: &str) -> BTreeSet<Series> {
    let mut series = BTreeSet::new();
    for line in emf.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            let namespace = directive["Namespace"].as_str().unwrap().to_owned();
            for dimensions in directive["Dimensions"].as_array().unwrap() {
                let dims: BTreeSet<String> = dimensions
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_owned())
                    .collect();
                for metric in directive["Metrics"].as_array().unwrap() {
                    let name = metric["Name"].as_str().unwrap().to_owned();
                    // The document carries a value for the metric and for every dimension.
                    assert!(!doc[&name].is_null(), "{line}");
                    assert!(dims.iter().all(|d| doc[d].is_string()), "{line}");
                    series.insert((namespace.clone(), name, dims.clone()));
                }
            }
        }
    }
    series
}

/// `SELECT FN(name) FROM SCHEMA("ns", d1, d2, …) WHERE … GROUP BY a, b …` as
/// (name, schema dimensions, dimensions the WHERE and GROUP BY clauses use).
fn parse_insights(query: &str) -> (String, BTreeSet<String>, Vec<String>) {
    let open = query.find('(').unwrap();
    let close = query[open..].find(')').unwrap() + open;
    let name = query[open + 1..close].trim().to_owned();
    let schema_at = query.find("SCHEMA(").unwrap() + "SCHEMA(".len();
    let schema_end = query[schema_at..].find(')').unwrap() + schema_at;
    let mut parts = query[schema_at..schema_end].split(',').map(str::trim);
    let namespace = parts.next().unwrap();
    assert_eq!(namespace, "\"${Namespace}\"", "{query}");
    let dims: BTreeSet<String> = parts.map(str::to_owned).collect();
    let mut used = Vec::new();
    if let Some(at) = query.find("WHERE ") {
        let clause = &query[at + 6..];
        let end = clause.find(" GROUP BY").unwrap_or(clause.len());
        for condition in clause[..end].split(" AND ") {
            used.push(condition.split_whitespace().next().unwrap().to_owned());
        }
    }
    if let Some(at) = query.find("GROUP BY ") {
        let clause = &query[at + 9..];
        let end = clause.find(" ORDER BY").unwrap_or(clause.len());
        used.extend(clause[..end].split(',').map(|d| d.trim().to_owned()));
    }
    (name, dims, used)
}

#[test]
fn every_alarm_queries_a_metric_the_example_emits_with_its_dimensions() {
    let options = cloudwatch_emf::Options {
        out: Some(std::env::temp_dir().join(format!("emf-{}.jsonl", std::process::id()))),
    };
    let summary = cloudwatch_emf::tour(options.clone()).unwrap();
    std::fs::remove_file(options.out.unwrap()).unwrap();
    assert_eq!(summary.completed, summary.calls, "{summary:?}");
    let series = emitted(&summary.emf);
    assert!(!series.is_empty());

    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/cloudwatch/alarms.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let namespace = template["Parameters"]["Namespace"]["Default"]
        .as_str()
        .unwrap();
    assert_eq!(namespace, cloudwatch_emf::NAMESPACE);
    let mut alarms = 0;
    for (id, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        alarms += 1;
        for query in resource["Properties"]["Metrics"].as_array().unwrap() {
            if let Some(metric) = query["MetricStat"]["Metric"].as_object() {
                // A metric math alarm's input: a metric by name and dimensions.
                assert_eq!(metric["Namespace"]["Ref"], "Namespace", "{id}");
                let name = metric["MetricName"].as_str().unwrap().to_owned();
                let dims: BTreeSet<String> = metric["Dimensions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["Name"].as_str().unwrap().to_owned())
                    .collect();
                assert!(
                    series.contains(&(namespace.to_owned(), name.clone(), dims.clone())),
                    "{id}: {name} with dimensions {dims:?} was not emitted; emitted: {series:#?}"
                );
                // The template's default dimension values are ones the example emitted.
                for dimension in metric["Dimensions"].as_array().unwrap() {
                    let value = match &dimension["Value"] {
                        serde_json::Value::String(v) => v.clone(),
                        other => {
                            let parameter = other["Ref"].as_str().unwrap();
                            let default = &template["Parameters"][parameter]["Default"];
                            default.as_str().unwrap().to_owned()
                        }
                    };
                    let pair = format!("\"{}\":\"{}\"", dimension["Name"].as_str().unwrap(), value);
                    // A counter still at zero writes no document: every call of the run
                    // succeeds, so `result=failure` has none.
                    if value != "failure" {
                        assert!(summary.emf.contains(&pair), "{id}: no document has {pair}");
                    }
                }
                continue;
            }
            let Some(expression) = query["Expression"]["Fn::Sub"].as_str() else {
                continue;
            };
            let (name, dims, used) = parse_insights(expression);
            assert!(
                series.contains(&(namespace.to_owned(), name.clone(), dims.clone())),
                "{id}: {name} with dimensions {dims:?} was not emitted; emitted: {series:#?}"
            );
            for d in used {
                assert!(dims.contains(&d), "{id}: {d} is not a dimension of {name}");
            }
        }
    }
    assert_eq!(alarms, 4, "throttles, 503s, utilisation, success rate");
    // No prompt text, no credential in any document.
    assert!(!summary.emf.contains("xxxx"));
    assert!(!summary.emf.contains("AKIDEXAMPLE"));
}
