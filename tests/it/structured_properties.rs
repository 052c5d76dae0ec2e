//! Structured output against an independent validator: for random JSON Schemas that serve
//! accepts, the value it writes validates (the `jsonschema` crate), at any target size, and the
//! same seed writes the same value.

use flux_sim::net::wire::structured::{check, generate};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..5, 0u64..40).prop_map(|(a, b)| json!({"type": "string", "minLength": a, "maxLength": a + b})),
        prop::collection::vec("[a-z]{1,6}", 1..4).prop_map(|e| json!({"type": "string", "enum": e})),
        prop_oneof![
            Just("date-time"),
            Just("date"),
            Just("time"),
            Just("email"),
            Just("uuid"),
            Just("uri")
        ]
        .prop_map(|f| json!({"type": "string", "format": f})),
        (-1_000i64..1_000, 0i64..50).prop_map(|(lo, w)| json!({"type": "integer", "minimum": lo, "maximum": lo + w})),
        (-10.0f64..10.0, 0.0f64..5.0).prop_map(|(lo, w)| json!({"type": "number", "minimum": lo, "maximum": lo + w})),
        Just(json!({"type": "boolean"})),
        Just(json!({"type": ["string", "null"]})),
        Just(json!({"const": "fixed"})),
    ]
}

fn schema() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 1..5), prop::collection::vec(any::<bool>(), 5)).prop_map(|(props, req)| {
                let names = ["a", "b", "c", "d", "e"];
                let properties: serde_json::Map<String, Value> =
                    props.iter().enumerate().map(|(i, p)| (names[i].to_string(), p.clone())).collect();
                let required: Vec<&str> = (0..props.len()).filter(|&i| req[i]).map(|i| names[i]).collect();
                json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
            }),
            (inner.clone(), 0u64..3, 0u64..4)
                .prop_map(|(items, min, extra)| json!({"type": "array", "items": items, "minItems": min, "maxItems": min + extra})),
            prop::collection::vec(inner, 1..3).prop_map(|b| json!({"anyOf": b})),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/structured_properties.txt"))),
        ..ProptestConfig::default()
    })]
    #[test]
    fn what_serve_writes_validates_against_the_schema(s in schema(), target in 0usize..4_000, seed in any::<u64>()) {
        prop_assert!(check(&s).is_ok(), "a satisfiable schema refused: {s}");
        let validator = jsonschema::validator_for(&s).unwrap();
        let mut r = rand_pcg::Pcg64Mcg::new(seed as u128 | 1);
        let v = generate(&s, target, &mut r).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        prop_assert!(errors.is_empty(), "{errors:?}\nschema {s}\nvalue {v}");
        let mut again = rand_pcg::Pcg64Mcg::new(seed as u128 | 1);
        prop_assert_eq!(generate(&s, target, &mut again).unwrap(), v);
    }
}
