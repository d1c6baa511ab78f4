//! Scope, scope-set, resource and restriction parsing on arbitrary text: no panic, round
//! trips, and the algebra laws on what parsed.
//!
//! Input lines: scope set A, scope set B, restriction list A, restriction list B (resources
//! separated by spaces, an empty line meaning unrestricted), then probes (each tried as a
//! scope and as a resource).
#![no_main]

use keyward::{Scope, ScopeSet, scope::{Resource, Restrictions}};
use libfuzzer_sys::fuzz_target;

fn scope_set(text: &str) -> Option<ScopeSet> {
    let set: ScopeSet = text.parse().ok()?;
    let shown = set.to_string();
    assert_eq!(shown.parse::<ScopeSet>().as_ref(), Ok(&set), "{text:?}");
    Some(set)
}

fn restrictions(text: &str) -> Option<Restrictions> {
    if text.is_empty() {
        return Some(Restrictions::unrestricted());
    }
    Restrictions::only(text.split(' ')).ok()
}

/// Each entry of the sets, its stem and scopes just below, where wildcard mistakes show.
fn scope_probes<'a>(sets: impl IntoIterator<Item = &'a ScopeSet>, out: &mut Vec<Scope>) {
    for entry in sets.into_iter().flat_map(ScopeSet::iter) {
        out.push(entry.clone());
        let stem = entry.as_str().trim_end_matches('*').trim_end_matches(':');
        for text in [stem.to_owned(), format!("{stem}:a"), format!("{stem}-b")] {
            out.extend(Scope::new(text.trim_start_matches(':')).ok());
        }
    }
}

fuzz_target!(|input: &str| {
    let mut lines = input.split('\n');
    let mut line = || lines.next().unwrap_or_default();
    let (a, b, ra, rb) = (scope_set(line()), scope_set(line()), line(), line());
    let (ra, rb) = (restrictions(ra), restrictions(rb));
    let mut scopes = Vec::new();
    let mut resources = Vec::new();
    for probe in lines {
        if let Ok(s) = probe.parse::<Scope>() {
            assert_eq!(s.as_str(), probe);
            scopes.push(s);
        }
        if let Ok(r) = probe.parse::<Resource>() {
            assert_eq!(r.to_string(), probe);
            resources.push(r);
        }
    }
    if let (Some(a), Some(b)) = (&a, &b) {
        let (both, either) = (a.intersection(b), a.union(b));
        scope_probes([a, b, &both, &either], &mut scopes);
        for s in &scopes {
            assert_eq!(
                both.allows(s),
                a.allows(s) && b.allows(s),
                "{s:?} in {a:?} ∩ {b:?}"
            );
            assert_eq!(
                either.allows(s),
                a.allows(s) || b.allows(s),
                "{s:?} in {a:?} ∪ {b:?}"
            );
        }
        assert!(both.is_subset(a) && both.is_subset(b));
        assert!(a.is_subset(&either) && b.is_subset(&either));
        assert_eq!(a.intersection(&either), *a);
    }
    if let (Some(ra), Some(rb)) = (&ra, &rb) {
        let both = ra.intersection(rb);
        for r in [ra, rb]
            .into_iter()
            .filter_map(Restrictions::resources)
            .flatten()
        {
            resources.push(r.clone());
            resources.extend(format!("{r}/x:1").parse::<Resource>().ok());
            resources.extend(
                r.as_str()
                    .rsplit_once('/')
                    .and_then(|(p, _)| p.parse().ok()),
            );
        }
        for r in &resources {
            assert_eq!(both.allows(r), ra.allows(r) && rb.allows(r), "{r:?}");
        }
        assert!(both.is_within(ra) && both.is_within(rb));
    }
});
