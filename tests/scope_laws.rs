//! Laws of the scope algebra, checked on random sets, catalogs and restrictions.
//!
//! Scopes are drawn from a tiny alphabet (`a`, `b`, `a-b`, `a1`) so that random sets
//! overlap, nest and share wildcards often; `a-b` and `a1` sort between `a` and `a:x`,
//! which catches lookups that rely on plain string order.

use keyward::{
    Scope, ScopeCatalog, ScopeSet,
    scope::{Resource, Restrictions},
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(10_000)
    }
}

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "a-b", "a1"])
}

/// A concrete scope, one to four segments.
fn concrete() -> impl Strategy<Value = Scope> {
    prop::collection::vec(segment(), 1..=4)
        .prop_map(|segments| Scope::new(&segments.join(":")).expect("valid concrete scope"))
}

/// A concrete scope or a wildcard (`*` rarely).
fn any_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        6 => concrete(),
        3 => prop::collection::vec(segment(), 1..=3)
            .prop_map(|s| Scope::new(&format!("{}:*", s.join(":"))).expect("valid wildcard")),
        1 => Just(Scope::new("*").expect("valid")),
    ]
}

fn set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(any_scope(), 0..8)
        .prop_map(|scopes| ScopeSet::from_scopes(scopes).expect("within limits"))
}

/// Scopes to test a law on: random ones, plus each entry of the sets, its base, and scopes
/// just below it, where wildcard mistakes show.
fn probes(sets: &[&ScopeSet], random: &[Scope]) -> Vec<Scope> {
    let mut out = random.to_vec();
    for set in sets {
        for entry in set.iter() {
            out.push(entry.clone());
            let stem = entry.as_str().trim_end_matches('*').trim_end_matches(':');
            for text in [
                stem.to_owned(),
                format!("{stem}:a"),
                format!("{stem}:a-b:b"),
                format!("{stem}-b"),
            ] {
                if let Ok(s) = Scope::new(text.trim_start_matches(':')) {
                    out.push(s);
                }
            }
        }
    }
    out
}

fn random_probes() -> impl Strategy<Value = Vec<Scope>> {
    prop::collection::vec(any_scope(), 0..6)
}

/// A catalog over the same alphabet: random implications between concrete scopes.
fn catalog() -> impl Strategy<Value = ScopeCatalog> {
    (
        prop::collection::vec(concrete(), 0..6),
        prop::collection::vec((concrete(), concrete()), 0..8),
    )
        .prop_map(|(declared, implications)| {
            let mut builder = ScopeCatalog::builder().scopes(declared.iter().map(|s| s.as_str()));
            for (from, to) in &implications {
                builder = builder.implies(from.as_str(), to.as_str());
            }
            builder.build().expect("valid catalog")
        })
}

fn resource() -> impl Strategy<Value = Resource> {
    let segment = prop::sample::select(vec!["company:4", "company:42", "project:7", "p:7"]);
    prop::collection::vec(segment, 1..=3)
        .prop_map(|s| Resource::new(&s.join("/")).expect("valid resource"))
}

fn restrictions() -> impl Strategy<Value = Restrictions> {
    prop_oneof![
        1 => Just(Restrictions::unrestricted()),
        1 => Just(Restrictions::nothing()),
        6 => prop::collection::vec(resource(), 1..5)
            .prop_map(|list| Restrictions::only(list.iter().map(|r| r.as_str())).expect("valid")),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn intersection_allows_what_both_allow(a in set(), b in set(), random in random_probes()) {
        let both = a.intersection(&b);
        for s in probes(&[&a, &b], &random) {
            prop_assert_eq!(both.allows(&s), a.allows(&s) && b.allows(&s), "{}", s);
        }
    }

    #[test]
    fn union_allows_what_either_allows(a in set(), b in set(), random in random_probes()) {
        let either = a.union(&b);
        for s in probes(&[&a, &b], &random) {
            prop_assert_eq!(either.allows(&s), a.allows(&s) || b.allows(&s), "{}", s);
        }
    }

    #[test]
    fn a_set_allows_what_its_scopes_grant(raw in prop::collection::vec(any_scope(), 0..8), random in random_probes()) {
        // Oracle: the plain list, checked entry by entry with `Scope::grants`.
        let set = ScopeSet::from_scopes(raw.clone()).expect("within limits");
        for s in probes(&[&set], &random).iter().chain(&raw) {
            prop_assert_eq!(set.allows(s), raw.iter().any(|e| e.grants(s)), "{} in {}", s, set);
        }
        prop_assert!(set.len() <= raw.len());
    }

    #[test]
    fn commutative(a in set(), b in set()) {
        prop_assert_eq!(a.union(&b), b.union(&a));
        prop_assert_eq!(a.intersection(&b), b.intersection(&a));
    }

    #[test]
    fn associative(a in set(), b in set(), c in set()) {
        prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
        prop_assert_eq!(a.intersection(&b).intersection(&c), a.intersection(&b.intersection(&c)));
    }

    #[test]
    fn idempotent(a in set()) {
        prop_assert_eq!(a.union(&a), a.clone());
        prop_assert_eq!(a.intersection(&a), a);
    }

    #[test]
    fn absorptive(a in set(), b in set()) {
        prop_assert_eq!(a.union(&a.intersection(&b)), a.clone());
        prop_assert_eq!(a.intersection(&a.union(&b)), a);
    }

    #[test]
    fn attenuation_never_widens(a in set(), b in set(), random in random_probes()) {
        let attenuated = a.intersection(&b);
        prop_assert!(attenuated.is_subset(&a));
        prop_assert!(attenuated.is_subset(&b));
        for s in probes(&[&a, &b], &random) {
            prop_assert!(!attenuated.allows(&s) || a.allows(&s), "{}", s);
        }
    }

    #[test]
    fn subset_agrees_with_intersection_and_allows(a in set(), b in set(), random in random_probes()) {
        let subset = a.is_subset(&b);
        prop_assert_eq!(subset, a.intersection(&b) == a);
        prop_assert_eq!(subset, a.union(&b) == b);
        if subset {
            for s in probes(&[&a, &b], &random) {
                prop_assert!(!a.allows(&s) || b.allows(&s), "{}", s);
            }
        }
    }

    #[test]
    fn display_parses_back(a in set(), s in any_scope()) {
        prop_assert_eq!(a.to_string().parse::<ScopeSet>(), Ok(a.clone()));
        prop_assert_eq!(s.to_string().parse::<Scope>(), Ok(s));
        let json = serde_json::to_string(&a).expect("serialize");
        prop_assert_eq!(serde_json::from_str::<ScopeSet>(&json).expect("deserialize"), a);
    }

    #[test]
    fn no_panic_on_arbitrary_input(text in ".{0,300}", bytes in "[a-z0-9:*/_.,\\- ]{0,80}") {
        for input in [&text, &bytes] {
            if let Ok(s) = Scope::new(input) {
                prop_assert_eq!(s.as_str(), input.as_str());
            }
            if let Ok(set) = input.parse::<ScopeSet>() {
                prop_assert_eq!(set.to_string().parse::<ScopeSet>(), Ok(set));
            }
            if let Ok(r) = Resource::new(input) {
                prop_assert!(Restrictions::only([r.as_str()]).expect("valid").allows(&r));
            }
            let _ = serde_json::from_str::<ScopeSet>(input);
            let _ = serde_json::from_str::<Restrictions>(input);
            let _ = serde_json::from_str::<ScopeSet>(&format!("[{input:?}]"));
        }
    }

    #[test]
    fn expand_is_a_closure(c in catalog(), a in set(), b in set()) {
        let e = c.expand(&a);
        prop_assert!(a.is_subset(&e), "extensive");
        prop_assert_eq!(c.expand(&e), e.clone(), "idempotent");
        if a.is_subset(&b) {
            prop_assert!(e.is_subset(&c.expand(&b)), "monotone");
        }
    }

    #[test]
    fn laws_hold_with_implications(c in catalog(), a in set(), b in set(), random in random_probes()) {
        let (ea, eb) = (c.expand(&a), c.expand(&b));
        let both = ea.intersection(&eb);
        let either = ea.union(&eb);
        // Closed sets stay closed, so `allows` on the result needs no catalog.
        prop_assert_eq!(c.expand(&both), both.clone());
        prop_assert_eq!(c.expand(&either), either.clone());
        for s in probes(&[&ea, &eb], &random) {
            prop_assert_eq!(both.allows(&s), ea.allows(&s) && eb.allows(&s), "{}", s);
            prop_assert_eq!(either.allows(&s), ea.allows(&s) || eb.allows(&s), "{}", s);
            // Whatever a closed set grants, it grants with all it implies.
            if ea.allows(&s) && !s.is_wildcard() {
                let implied = c.expand(&ScopeSet::from_scopes([s.clone()]).expect("one"));
                prop_assert!(implied.is_subset(&ea), "{} in {} implies {}", s, ea, implied);
            }
        }
    }

    #[test]
    fn restriction_intersection_never_widens(a in restrictions(), b in restrictions(), probes in prop::collection::vec(resource(), 0..8)) {
        let both = a.intersection(&b);
        prop_assert!(both.is_within(&a) && both.is_within(&b));
        prop_assert_eq!(both.is_unrestricted(), a.is_unrestricted() && b.is_unrestricted());
        let mut all = probes;
        all.extend(a.resources().into_iter().flatten().cloned());
        all.extend(b.resources().into_iter().flatten().cloned());
        for r in &all {
            prop_assert_eq!(both.allows(r), a.allows(r) && b.allows(r), "{}", r);
        }
        prop_assert_eq!(&both, &b.intersection(&a));
        let json = serde_json::to_string(&both).expect("serialize");
        prop_assert_eq!(serde_json::from_str::<Restrictions>(&json).expect("deserialize"), both);
    }
}
