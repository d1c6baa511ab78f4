//! The scope algebra from the products' point of view: Toado, Toolio, Takonaut, Tooken, and
//! the wildcard rules Unkey documents but does not implement.

use keyward::{
    Scope, ScopeCatalog, ScopeSet,
    scope::{CatalogError, Denied, Resource, ResourceError, Restrictions, ScopeError, authorize},
};

fn scope(s: &str) -> Scope {
    s.parse().expect("valid scope")
}

fn scopes(s: &str) -> ScopeSet {
    s.parse().expect("valid scope set")
}

fn resource(s: &str) -> Resource {
    s.parse().expect("valid resource")
}

/// What an HTTP layer answers with a denial: 403 and a `WWW-Authenticate` naming the scope.
fn www_authenticate(denied: &Denied) -> String {
    match denied.missing_scope() {
        Some(s) => format!("Bearer error=\"insufficient_scope\", scope=\"{s}\""),
        None => "Bearer error=\"insufficient_scope\"".to_owned(),
    }
}

mod toado {
    use super::*;

    /// Toado's four scopes: `comments` includes `read`; `tickets:write` includes `read` and
    /// `comments`; `tickets:assign` includes `read`.
    fn catalog() -> ScopeCatalog {
        ScopeCatalog::builder()
            .scopes(["read", "comments", "tickets:write", "tickets:assign"])
            .implies("comments", "read")
            .implies("tickets:write", "comments")
            .implies("tickets:write", "read")
            .implies("tickets:assign", "read")
            .strict(true)
            .build()
            .expect("Toado's catalog")
    }

    fn token(requested: &str) -> ScopeSet {
        let catalog = catalog();
        let requested = scopes(requested);
        catalog
            .validate(&requested, &[])
            .expect("Toado knows these scopes");
        catalog.resolve(&requested, &[])
    }

    #[test]
    fn read_only_reporting_token_reads_and_nothing_else() {
        let t = token("read");
        assert!(t.allows(&scope("read")));
        for denied in ["comments", "tickets:write", "tickets:assign"] {
            assert!(!t.allows(&scope(denied)), "{denied}");
        }
    }

    #[test]
    fn slack_bot_posting_comments_can_also_read() {
        let t = token("comments");
        assert!(t.allows_all(&[scope("read"), scope("comments")]));
        assert!(!t.allows(&scope("tickets:write")));
    }

    #[test]
    fn ticket_writer_includes_read_and_comments_but_not_assignment() {
        let t = token("tickets:write");
        assert_eq!(t.to_string(), "comments read tickets:write");
        assert!(!t.allows(&scope("tickets:assign")));
        let denied = authorize(
            &t,
            &Restrictions::unrestricted(),
            &scope("tickets:assign"),
            None,
        )
        .expect_err("no assignment power");
        assert_eq!(denied, Denied::MissingScope(scope("tickets:assign")));
        assert_eq!(
            www_authenticate(&denied),
            r#"Bearer error="insufficient_scope", scope="tickets:assign""#
        );
    }

    #[test]
    fn assigner_reads_but_cannot_comment() {
        let t = token("tickets:assign");
        assert!(t.allows(&scope("read")));
        assert!(!t.allows(&scope("comments")));
    }

    #[test]
    fn triage_agent_has_all_four() {
        let t = token("read comments tickets:write tickets:assign");
        let all_four = ["read", "comments", "tickets:write", "tickets:assign"].map(scope);
        assert!(t.allows_all(&all_four));
        assert!(!t.allows(&scope("billing:read")));
    }

    #[test]
    fn unknown_scopes_are_refused_at_creation_by_name() {
        let err = catalog()
            .validate(&scopes("read tickets:delete admin:*"), &[])
            .expect_err("Toado does not know these");
        assert!(
            matches!(&err, CatalogError::Unknown(u)
                if u.scopes() == [scope("tickets:delete"), scope("admin:*")] && u.roles().is_empty()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "unknown scopes or roles: tickets:delete, admin:*"
        );
        // A wildcard over declared scopes is known, and brings their implications.
        let t = token("tickets:*");
        assert!(t.allows_all(&[scope("read"), scope("comments"), scope("tickets:assign")]));
    }

    struct Ticket {
        id: u32,
        at: Resource,
    }

    fn tickets() -> Vec<Ticket> {
        [
            (1, "company:42/project:7"),
            (2, "company:42/project:8"),
            (3, "company:4/project:7"),
            (4, "company:420/project:7"),
            (5, "company:43/project:1"),
        ]
        .into_iter()
        .map(|(id, at)| Ticket {
            id,
            at: resource(at),
        })
        .collect()
    }

    fn listed(restrictions: &Restrictions) -> Vec<u32> {
        restrictions
            .filter(tickets(), |t| t.at.clone())
            .iter()
            .map(|t| t.id)
            .collect()
    }

    #[test]
    fn company_token_lists_only_its_company_and_cannot_write_elsewhere() {
        let t = token("tickets:write");
        let company = Restrictions::only(["company:42"]).expect("valid");
        assert_eq!(listed(&company), [1, 2]);
        let write = scope("tickets:write");
        assert_eq!(
            authorize(
                &t,
                &company,
                &write,
                Some(&resource("company:42/project:8"))
            ),
            Ok(())
        );
        for elsewhere in ["company:4/project:7", "company:420/project:7", "company:43"] {
            assert_eq!(
                authorize(&t, &company, &write, Some(&resource(elsewhere))),
                Err(Denied::Resource(resource(elsewhere))),
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn project_token_sees_one_project_not_the_rest_of_its_company() {
        let project = Restrictions::only(["company:42/project:7"]).expect("valid");
        assert_eq!(listed(&project), [1]);
        assert!(!project.allows(&resource("company:42")));
        assert!(project.allows(&resource("company:42/project:7/ticket:99")));
        let t = token("comments");
        let denied = authorize(
            &t,
            &project,
            &scope("comments"),
            Some(&resource("company:42/project:8")),
        )
        .expect_err("other project");
        assert_eq!(
            denied.refused_resource(),
            Some(&resource("company:42/project:8"))
        );
        assert_eq!(
            denied.to_string(),
            "resource company:42/project:8 is outside the key's restrictions"
        );
    }

    #[test]
    fn several_companies_and_no_filter() {
        let two = Restrictions::only(["company:43", "company:4"]).expect("valid");
        assert_eq!(listed(&two), [3, 5]);
        assert_eq!(listed(&Restrictions::unrestricted()), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn narrowing_a_token_to_another_company_leaves_it_nothing() {
        let company = Restrictions::only(["company:42"]).expect("valid");
        let other = Restrictions::only(["company:43"]).expect("valid");
        let narrowed = company.intersection(&other);
        assert!(narrowed.is_nothing());
        assert!(!narrowed.is_unrestricted());
        assert_eq!(listed(&narrowed), Vec::<u32>::new());
    }

    #[test]
    fn restrictions_survive_storage() {
        let project = Restrictions::only(["company:42/project:7"]).expect("valid");
        let json = serde_json::to_string(&project).expect("serialize");
        assert_eq!(json, r#"["company:42/project:7"]"#);
        let back: Restrictions = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, project);
        assert_eq!(
            Restrictions::only(Vec::<String>::new()),
            Err(ResourceError::EmptyList)
        );
    }
}

mod toolio {
    use super::*;

    fn catalog() -> ScopeCatalog {
        ScopeCatalog::builder()
            .scopes([
                "plans:read",
                "plans:write",
                "forecasts:read",
                "forecasts:run",
                "settings:read",
                "settings:write",
            ])
            .implies("plans:write", "plans:read")
            .implies("forecasts:run", "forecasts:read")
            .implies("settings:write", "settings:read")
            .role("viewer", ["plans:read", "forecasts:read"])
            .role("planner", ["plans:write"])
            .role("forecaster", ["forecasts:run"])
            .role("admin", ["settings:*"])
            .strict(true)
            .build()
            .expect("Toolio's catalog")
    }

    fn key(roles: &[&str]) -> ScopeSet {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let catalog = catalog();
        catalog
            .validate(&ScopeSet::new(), &roles)
            .expect("known roles");
        catalog.resolve(&ScopeSet::new(), &roles)
    }

    #[test]
    fn a_key_gets_the_combined_permissions_of_its_roles() {
        let k = key(&["planner", "forecaster"]);
        assert!(k.allows_all(&[
            scope("plans:write"),
            scope("plans:read"),
            scope("forecasts:run"),
            scope("forecasts:read"),
        ]));
        assert!(!k.allows(&scope("settings:read")));
        let catalog = catalog();
        let combined = catalog.expand(
            &catalog
                .role("planner")
                .expect("planner")
                .union(catalog.role("forecaster").expect("forecaster")),
        );
        assert_eq!(k, combined);
    }

    #[test]
    fn the_least_privileged_role_is_read_only() {
        let k = key(&["viewer"]);
        assert!(k.allows(&scope("plans:read")));
        assert!(!k.allows(&scope("plans:write")));
        assert!(!k.allows(&scope("forecasts:run")));
    }

    #[test]
    fn a_role_with_a_wildcard_covers_its_area() {
        let k = key(&["admin"]);
        assert!(k.allows(&scope("settings:write")));
        assert!(k.allows(&scope("settings:read")));
        assert!(!k.allows(&scope("plans:read")));
    }

    #[test]
    fn an_unknown_role_is_refused_by_name() {
        let err = catalog()
            .validate(&ScopeSet::new(), &["viewer".into(), "owner".into()])
            .expect_err("no such role");
        assert!(
            matches!(&err, CatalogError::Unknown(u) if u.roles() == ["owner"] && u.scopes().is_empty()),
            "{err:?}"
        );
        // And it grants nothing if it ever reaches verification.
        assert!(
            catalog()
                .resolve(&ScopeSet::new(), &["owner".into()])
                .is_empty()
        );
    }
}

mod takonaut {
    use super::*;

    fn catalog() -> ScopeCatalog {
        ScopeCatalog::builder()
            .implies("tasks:write", "tasks:read")
            .implies("sprints:manage", "sprints:read")
            .implies("leaves:approve", "leaves:read")
            .build()
            .expect("Takonaut's catalog")
    }

    /// A Takonaut key carries its owner's permissions: what the key may do now is the key's
    /// scopes bounded by what the owner may do now.
    fn effective(key: &ScopeSet, owner_now: &ScopeSet) -> ScopeSet {
        let catalog = catalog();
        catalog.expand(key).intersection(&catalog.expand(owner_now))
    }

    #[test]
    fn demoting_the_owner_shrinks_the_key() {
        let key = ScopeSet::all(); // "carries your permissions"
        let manager = scopes("tasks:write sprints:manage leaves:approve");
        let before = effective(&key, &manager);
        assert!(before.allows(&scope("leaves:approve")));
        assert!(before.allows(&scope("sprints:read")));

        let member = scopes("tasks:write");
        let after = effective(&key, &member);
        assert!(!after.allows(&scope("leaves:approve")));
        assert!(!after.allows(&scope("sprints:manage")));
        assert!(!after.allows(&scope("sprints:read")));
        assert!(after.allows(&scope("tasks:read")));
        assert!(after.is_subset(&before));

        // Promote again and the same key regains what the owner regains.
        assert_eq!(effective(&key, &manager), before);
    }

    #[test]
    fn a_key_never_does_more_than_its_owner_can_do_now() {
        let key = scopes("tasks:* sprints:manage");
        let owner = scopes("tasks:read sprints:read");
        let now = effective(&key, &owner);
        assert_eq!(now.to_string(), "sprints:read tasks:read");
        assert!(now.is_subset(&catalog().expand(&owner)));
        assert!(!now.allows(&scope("tasks:write")));
    }

    #[test]
    fn an_owner_with_nothing_left_has_a_key_that_does_nothing() {
        let now = effective(&ScopeSet::all(), &ScopeSet::new());
        assert!(now.is_empty());
        assert!(!now.allows(&scope("tasks:read")));
    }
}

mod tooken {
    use super::*;

    #[test]
    fn management_keys_have_full_access() {
        let management = ScopeSet::all();
        for s in [
            "tokens:create",
            "tokens:revoke",
            "audit:read",
            "settings:write",
        ] {
            assert!(management.allows(&scope(s)), "{s}");
        }
        assert_eq!(management.to_string(), "*");
    }

    #[test]
    fn a_token_with_tokens_read_cannot_create_or_revoke_tokens() {
        let token = scopes("tokens:read");
        let unrestricted = Restrictions::unrestricted();
        for action in ["tokens:create", "tokens:revoke"] {
            let denied = authorize(&token, &unrestricted, &scope(action), None)
                .expect_err("narrowly scoped");
            assert_eq!(
                www_authenticate(&denied),
                format!(r#"Bearer error="insufficient_scope", scope="{action}""#)
            );
        }
        assert_eq!(
            authorize(&token, &unrestricted, &scope("tokens:read"), None),
            Ok(())
        );
    }

    #[test]
    fn issued_tokens_are_at_most_what_the_issuer_holds() {
        let issuer = scopes("tokens:* audit:read");
        let requested = scopes("tokens:read audit:read billing:read");
        assert!(!requested.is_subset(&issuer));
        let issued = requested.intersection(&issuer);
        assert_eq!(issued.to_string(), "audit:read tokens:read");
        assert!(issued.is_subset(&issuer));
    }

    #[test]
    fn token_scopes_are_stored_as_a_list_of_strings() {
        let token = scopes("tokens:read, audit:read");
        let json = serde_json::to_string(&token).expect("serialize");
        assert_eq!(json, r#"["audit:read","tokens:read"]"#);
        assert_eq!(
            serde_json::from_str::<ScopeSet>(&json).expect("deserialize"),
            token
        );
        assert!(serde_json::from_str::<ScopeSet>(r#"["tokens:READ"]"#).is_err());
    }
}

mod wildcards {
    use super::*;

    #[test]
    fn a_wildcard_grants_what_is_below_its_base_but_not_the_base() {
        let docs = scopes("documents:*");
        assert!(docs.allows(&scope("documents:read")));
        assert!(docs.allows(&scope("documents:drafts:write")));
        assert!(!docs.allows(&scope("documents")));
        assert!(!docs.allows(&scope("documentsx:read")));
        assert!(scopes("documents documents:*").allows(&scope("documents")));
    }

    #[test]
    fn star_alone_grants_everything() {
        assert!(scopes("*").allows(&scope("anything:at:all")));
        assert!(scopes("*").allows(&scope("documents:*")));
    }

    #[test]
    fn star_is_never_literal_nor_a_partial_pattern() {
        // Unkey documents `documents.*`; here a misplaced `*` is an error, not a literal.
        for bad in [
            "documents.*",
            "documents*",
            "*:read",
            "documents:*:read",
            "a:**",
        ] {
            assert_eq!(Scope::new(bad), Err(ScopeError::MisplacedWildcard), "{bad}");
        }
        assert_eq!(
            "read documents.*".parse::<ScopeSet>(),
            Err(ScopeError::MisplacedWildcard)
        );
    }

    #[test]
    fn limits_are_named_in_errors() {
        let err = "a "
            .repeat(10_000)
            .parse::<ScopeSet>()
            .expect_err("too many");
        assert_eq!(err, ScopeError::TooMany);
        assert_eq!(err.to_string(), "too many scopes (maximum 256)");
        assert_eq!(
            Scope::new(&"a".repeat(129))
                .expect_err("too long")
                .to_string(),
            "scope too long (maximum 128 characters)"
        );
    }
}

#[test]
fn the_catalog_lists_its_scopes_roles_and_what_each_includes() {
    let catalog = ScopeCatalog::builder()
        .describe("read", "read tickets and comments")
        .describe("comments", "post comments; includes read")
        .implies("comments", "read")
        .implies("tickets:write", "comments")
        .scope("billing")
        .role("support", ["comments", "tickets:*"])
        .role("auditor", ["read"])
        .build()
        .expect("test setup");
    let listing = catalog.listing();
    let names: Vec<&str> = listing.scopes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["billing", "comments", "read", "tickets:write"]);
    for entry in &listing.scopes {
        // `includes` is exactly what expanding the scope alone adds.
        let alone = ScopeSet::from_scopes([entry.name.clone()]).expect("one scope");
        let mut expanded: Vec<Scope> = catalog.expand(&alone).iter().cloned().collect();
        expanded.retain(|s| *s != entry.name);
        assert_eq!(entry.includes, expanded, "{}", entry.name);
    }
    assert_eq!(
        listing.scopes[1].description.as_deref(),
        Some("post comments; includes read")
    );
    assert_eq!(listing.scopes[0].description, None);
    let json = serde_json::to_value(&listing).expect("serializes");
    assert_eq!(
        json["scopes"][3],
        serde_json::json!({"name": "tickets:write", "description": null, "includes": ["comments", "read"]})
    );
    assert_eq!(
        json["roles"],
        serde_json::json!([
            {"name": "auditor", "scopes": ["read"]},
            {"name": "support", "scopes": ["comments", "tickets:*"]}
        ])
    );
    assert_eq!(catalog.listing(), listing, "stable order");
}

#[test]
fn descriptions_are_bounded_and_declare_concrete_scopes() {
    let long = "x".repeat(keyward::scope::MAX_DESCRIPTION_LEN + 1);
    assert_eq!(
        ScopeCatalog::builder().describe("read", long).build(),
        Err(CatalogError::DescriptionTooLong("read".into()))
    );
    assert!(matches!(
        ScopeCatalog::builder()
            .describe("tickets:*", "all tickets")
            .build(),
        Err(CatalogError::Wildcard(_))
    ));
    let strict = ScopeCatalog::builder()
        .describe("read", "read")
        .strict(true)
        .build()
        .expect("test setup");
    assert!(strict.contains(&"read".parse().expect("scope")));
}
